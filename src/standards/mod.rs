//! Centre-to-controller standards the field already speaks, as codecs
//! kept apart from the daemon's I/O.
//!
//! # Layout
//! - [`gbt20999`]: GB/T 20999-2017 (communication between a traffic
//!   signal controller and its upper computer): frames, escaping, CRC,
//!   frame types, error codes and the data-class identifiers, pure.

pub mod gbt20999;
