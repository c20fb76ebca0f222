//! GB/T 20999-2017, the Chinese standard for data communication between a
//! traffic signal controller and its upper computer (the centre): the
//! pure codec the adapter (`crate::daemon::gbt20999`) speaks through.
//!
//! - [`crc`]: the frame check (CRC-16, 0x1005, initial 0).
//! - [`frame`]: frames, escaping, frame types, error codes, and a
//!   deframer for byte streams.
//! - [`classes`]: data-class identifiers and value enumerations.
//! - [`stages`]: the stage view of a ring-barrier controller, and stage
//!   plans from a centre as splits.
//!
//! What is settled and what is reconstructed is in `docs/standards.md`.

pub mod classes;
pub mod crc;
pub mod frame;
pub mod stages;

pub use frame::{Address, DataValue, Deframer, EncodeError, ErrorCode, Escaping, Frame, FrameError, FrameType, Header};

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn kind() -> impl Strategy<Value = FrameType> {
        (0..10usize).prop_map(|k| {
            [
                FrameType::Query,
                FrameType::QueryReply,
                FrameType::QueryError,
                FrameType::Set,
                FrameType::SetReply,
                FrameType::SetError,
                FrameType::Broadcast,
                FrameType::Report,
                FrameType::HeartbeatQuery,
                FrameType::HeartbeatReply,
            ][k]
        })
    }

    fn frame() -> impl Strategy<Value = Frame> {
        let header = (any::<u16>(), any::<u8>(), any::<u32>(), any::<u8>(), any::<u8>(), kind()).prop_map(
            |(version, centre, controller, intersection, sequence, kind)| Header {
                version,
                centre,
                controller,
                intersection,
                sequence,
                kind,
            },
        );
        let value = (any::<u8>(), any::<[u8; 4]>(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(
            |(index, [class, object, attribute, element], value)| DataValue {
                index,
                address: Address::new(class, object, attribute, element),
                value,
            },
        );
        (header, proptest::collection::vec(value, 0..12)).prop_map(|(header, values)| Frame { header, values })
    }

    proptest! {
        #[test]
        fn frames_round_trip_on_both_links(frame in frame()) {
            for escaping in [Escaping::Raw, Escaping::Escaped] {
                let wire = frame.encode(escaping).expect("small frames encode");
                prop_assert_eq!(Frame::decode(&wire, escaping), Ok(frame.clone()));
            }
            let escaped = frame.encode(Escaping::Escaped).expect("encodes");
            // Between the delimiters every delimiter byte is escaped.
            let inner = &escaped[1..escaped.len() - 1];
            let mut after_escape = false;
            for &b in inner {
                if !after_escape {
                    prop_assert!(b != frame::START && b != frame::END);
                }
                after_escape = !after_escape && b == frame::ESCAPE;
            }
            let mut deframer = Deframer::new();
            let got: Vec<_> = escaped.iter().filter_map(|&b| deframer.push(b)).collect();
            prop_assert_eq!(got, vec![Ok(frame)]);
        }

        #[test]
        fn any_bytes_decode_to_a_frame_or_an_error_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut wire = vec![frame::START];
            wire.extend_from_slice(&bytes);
            wire.push(frame::END);
            let _ = Frame::decode(&wire, Escaping::Raw);
            let _ = Frame::decode(&wire, Escaping::Escaped);
            let _ = Frame::decode(&bytes, Escaping::Raw);
            let mut deframer = Deframer::new();
            for &b in &wire {
                let _ = deframer.push(b);
            }
        }

        #[test]
        fn a_corrupted_byte_never_passes_as_the_same_frame(frame in frame(), at in any::<usize>(), flip in 1..=255u8) {
            let mut wire = frame.encode(Escaping::Raw).expect("encodes");
            // Between the delimiters: a single-byte error is within what a
            // CRC-16 always detects.
            let at = 1 + at % (wire.len() - 2);
            wire[at] ^= flip;
            prop_assert!(Frame::decode(&wire, Escaping::Raw).is_err());
        }
    }
}
