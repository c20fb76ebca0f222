//! GB/T 20999-2017 frames (its Annex A as `/work/shared/STANDARDS.md` §1.1
//! reconstructs it from three open implementations and a captured frame):
//!
//! ```text
//! 7E | length u16 | version u16 | centre u8 | controller u32 | intersection u8
//!    | sequence u8 | frame type u8 | count u8 | data values … | CRC u16 | 7D
//! data value: index u8 | length u8 (= 4 + value) | class u8 | object u8
//!             | attribute u8 | element u8 | value bytes
//! ```
//!
//! Fields are big-endian. The length counts version … CRC. The CRC
//! ([`super::crc`]) covers length … last data byte. On TCP and RS-232 every
//! 0x7E, 0x7D and 0x5C between the delimiters is preceded by 0x5C; the
//! escapes count in neither the length nor the CRC. UDP frames are not
//! escaped, so there a body byte may equal 0x7D and only the length field
//! finds the end.
//!
//! Decoding never panics: every malformed frame is a [`FrameError`].

use super::crc::crc16;

pub const START: u8 = 0x7E;
pub const END: u8 = 0x7D;
pub const ESCAPE: u8 = 0x5C;

/// Version … count: the fixed part the length field counts before the
/// data values.
pub const HEADER_LEN: usize = 11;
/// The length field and the CRC around the counted header and values.
const FRAMING_LEN: usize = 2 + 2;
/// Class, object, attribute, element: what a data value's length counts
/// besides the value.
pub const ADDRESS_LEN: usize = 4;
/// A value's bytes at most: its length byte counts the address too.
pub const MAX_VALUE_LEN: usize = u8::MAX as usize - ADDRESS_LEN;
/// Data values in one frame at most (the count is one byte).
pub const MAX_VALUES: usize = u8::MAX as usize;
/// An unescaped body (length field … CRC) at most: the length field is
/// 16 bits and counts all of it but itself.
pub const MAX_BODY_LEN: usize = u16::MAX as usize + 2;

/// Whether the link escapes delimiter bytes: the standard escapes on TCP
/// and RS-232 and not on UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escaping {
    /// TCP and RS-232.
    Escaped,
    /// UDP.
    Raw,
}

/// The frame type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameType {
    Query,
    QueryReply,
    QueryError,
    Set,
    SetReply,
    SetError,
    Broadcast,
    /// An active report (trap) from the controller.
    Report,
    HeartbeatQuery,
    HeartbeatReply,
}

impl FrameType {
    const ALL: [(FrameType, u8); 10] = [
        (FrameType::Query, 0x10),
        (FrameType::QueryReply, 0x20),
        (FrameType::QueryError, 0x21),
        (FrameType::Set, 0x30),
        (FrameType::SetReply, 0x40),
        (FrameType::SetError, 0x41),
        (FrameType::Broadcast, 0x50),
        (FrameType::Report, 0x60),
        (FrameType::HeartbeatQuery, 0x70),
        (FrameType::HeartbeatReply, 0x80),
    ];

    pub fn byte(self) -> u8 {
        Self::ALL.iter().find(|(t, _)| *t == self).map_or(0, |&(_, b)| b)
    }

    pub fn from_byte(byte: u8) -> Option<FrameType> {
        Self::ALL.iter().find(|&&(_, b)| b == byte).map(|&(t, _)| t)
    }
}

/// The error codes a query-error or set-error reply carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The value is not one the object takes.
    BadValue,
    /// The value has the wrong number of bytes.
    WrongLength,
    /// The value is out of range.
    Overflow,
    /// The object cannot be set.
    ReadOnly,
    /// No such class, object, attribute or element.
    NotPresent,
    General,
    /// The controller could not carry out the control.
    ControlFailed,
}

impl ErrorCode {
    const ALL: [(ErrorCode, u8); 7] = [
        (ErrorCode::BadValue, 0x10),
        (ErrorCode::WrongLength, 0x11),
        (ErrorCode::Overflow, 0x12),
        (ErrorCode::ReadOnly, 0x20),
        (ErrorCode::NotPresent, 0x30),
        (ErrorCode::General, 0x40),
        (ErrorCode::ControlFailed, 0x50),
    ];

    pub fn byte(self) -> u8 {
        Self::ALL.iter().find(|(c, _)| *c == self).map_or(0, |&(_, b)| b)
    }

    pub fn from_byte(byte: u8) -> Option<ErrorCode> {
        Self::ALL.iter().find(|&&(_, b)| b == byte).map(|&(c, _)| c)
    }
}

/// Where a data value points: class, object, attribute, element (0 as
/// attribute or element in a query: all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub class: u8,
    pub object: u8,
    pub attribute: u8,
    pub element: u8,
}

impl Address {
    pub const fn new(class: u8, object: u8, attribute: u8, element: u8) -> Address {
        Address { class, object, attribute, element }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02X}.{:02X}.{:02X}.{:02X}", self.class, self.object, self.attribute, self.element)
    }
}

/// One data value: its 1-based place in the frame, its address and its
/// bytes (none in a query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataValue {
    pub index: u8,
    pub address: Address,
    pub value: Vec<u8>,
}

/// The fixed header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    /// The upper computer (centre) the frame is from or to.
    pub centre: u8,
    /// The controller's id in the centre's system.
    pub controller: u32,
    /// Which of the controller's intersections (from 1).
    pub intersection: u8,
    /// The sender's sequence number; a reply echoes it.
    pub sequence: u8,
    pub kind: FrameType,
}

/// A whole frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub values: Vec<DataValue>,
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame does not start with 0x7E")]
    NoStart,
    #[error("the frame does not end with 0x7D")]
    NoEnd,
    #[error("an unescaped 0x{byte:02X} at byte {at} inside the frame")]
    UnescapedDelimiter { byte: u8, at: usize },
    #[error("0x{byte:02X} after the escape byte 0x5C at byte {at}: only 0x7E, 0x7D and 0x5C are escaped")]
    BadEscape { byte: u8, at: usize },
    #[error("the frame ends inside an escape")]
    DanglingEscape,
    #[error("{len} bytes between the delimiters: a frame has at least {}", FRAMING_LEN + HEADER_LEN)]
    Short { len: usize },
    #[error("{len} bytes between the delimiters: the length field allows at most {MAX_BODY_LEN}")]
    TooLong { len: usize },
    #[error("the length field says {declared} bytes, the frame has {actual}")]
    Length { declared: usize, actual: usize },
    #[error("CRC 0x{declared:04X} in the frame, 0x{computed:04X} computed")]
    Crc { declared: u16, computed: u16 },
    #[error("unknown frame type 0x{0:02X}")]
    UnknownFrameType(u8),
    #[error("data value {position}: length {length} is less than the 4 address bytes")]
    ValueLength { position: usize, length: u8 },
    #[error("data value {position} runs past the end of the frame")]
    ValueOverrun { position: usize },
    #[error("the count says {declared} data values, the frame holds {found} and {trailing} bytes more")]
    Count { declared: usize, found: usize, trailing: usize },
}

/// Why a frame cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} data values: a frame holds at most {MAX_VALUES}")]
    TooManyValues(usize),
    #[error("data value {index} ({address}): {len} value bytes, at most {MAX_VALUE_LEN}")]
    ValueTooLong { index: u8, address: Address, len: usize },
    #[error("{0} bytes: the length field allows at most {MAX_BODY_LEN}")]
    TooLong(usize),
}

impl Frame {
    /// The frame on the wire, delimiters included.
    ///
    /// # Errors
    /// More values, or longer ones, than the one-byte count and lengths
    /// can say, or a frame the 16-bit length field cannot.
    pub fn encode(&self, escaping: Escaping) -> Result<Vec<u8>, EncodeError> {
        let body = self.body()?;
        let mut wire = Vec::with_capacity(body.len() + 8);
        wire.push(START);
        match escaping {
            Escaping::Raw => wire.extend_from_slice(&body),
            Escaping::Escaped => {
                for &b in &body {
                    if matches!(b, START | END | ESCAPE) {
                        wire.push(ESCAPE);
                    }
                    wire.push(b);
                }
            }
        }
        wire.push(END);
        Ok(wire)
    }

    /// The unescaped body: length field … CRC.
    fn body(&self) -> Result<Vec<u8>, EncodeError> {
        if self.values.len() > MAX_VALUES {
            return Err(EncodeError::TooManyValues(self.values.len()));
        }
        let values_len: usize = self.values.iter().map(|v| 2 + ADDRESS_LEN + v.value.len()).sum();
        let len = FRAMING_LEN + HEADER_LEN + values_len;
        if len > MAX_BODY_LEN {
            return Err(EncodeError::TooLong(len));
        }
        let mut body = Vec::with_capacity(len);
        // Checked above: at most u16::MAX.
        body.extend_from_slice(&((len - 2) as u16).to_be_bytes());
        let h = &self.header;
        body.extend_from_slice(&h.version.to_be_bytes());
        body.push(h.centre);
        body.extend_from_slice(&h.controller.to_be_bytes());
        body.extend_from_slice(&[h.intersection, h.sequence, h.kind.byte(), self.values.len() as u8]);
        for v in &self.values {
            if v.value.len() > MAX_VALUE_LEN {
                return Err(EncodeError::ValueTooLong { index: v.index, address: v.address, len: v.value.len() });
            }
            let a = v.address;
            body.extend_from_slice(&[v.index, (ADDRESS_LEN + v.value.len()) as u8]);
            body.extend_from_slice(&[a.class, a.object, a.attribute, a.element]);
            body.extend_from_slice(&v.value);
        }
        let crc = crc16(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        Ok(body)
    }

    /// One whole frame, delimiters included.
    ///
    /// # Errors
    /// Whatever makes `wire` not a frame, as a [`FrameError`].
    pub fn decode(wire: &[u8], escaping: Escaping) -> Result<Frame, FrameError> {
        let (&first, rest) = wire.split_first().ok_or(FrameError::NoStart)?;
        if first != START {
            return Err(FrameError::NoStart);
        }
        let (&last, inner) = rest.split_last().ok_or(FrameError::NoEnd)?;
        if last != END {
            return Err(FrameError::NoEnd);
        }
        match escaping {
            Escaping::Raw => Frame::from_body(inner),
            Escaping::Escaped => {
                let mut body = Vec::with_capacity(inner.len());
                let mut escaped = false;
                for (k, &b) in inner.iter().enumerate() {
                    // Byte 0 is the start byte.
                    let at = k + 1;
                    if escaped {
                        if !matches!(b, START | END | ESCAPE) {
                            return Err(FrameError::BadEscape { byte: b, at });
                        }
                        body.push(b);
                        escaped = false;
                    } else if b == ESCAPE {
                        escaped = true;
                    } else if b == START || b == END {
                        return Err(FrameError::UnescapedDelimiter { byte: b, at });
                    } else {
                        body.push(b);
                    }
                }
                if escaped {
                    return Err(FrameError::DanglingEscape);
                }
                Frame::from_body(&body)
            }
        }
    }

    /// A frame from its unescaped body (length field … CRC).
    ///
    /// # Errors
    /// As [`Frame::decode`].
    pub fn from_body(body: &[u8]) -> Result<Frame, FrameError> {
        if body.len() < FRAMING_LEN + HEADER_LEN {
            return Err(FrameError::Short { len: body.len() });
        }
        if body.len() > MAX_BODY_LEN {
            return Err(FrameError::TooLong { len: body.len() });
        }
        let declared = usize::from(u16::from_be_bytes([body[0], body[1]]));
        if declared != body.len() - 2 {
            return Err(FrameError::Length { declared, actual: body.len() - 2 });
        }
        let (checked, crc) = body.split_at(body.len() - 2);
        let declared_crc = u16::from_be_bytes([crc[0], crc[1]]);
        let computed = crc16(checked);
        if declared_crc != computed {
            return Err(FrameError::Crc { declared: declared_crc, computed });
        }
        let h = &checked[2..2 + HEADER_LEN];
        let kind = FrameType::from_byte(h[9]).ok_or(FrameError::UnknownFrameType(h[9]))?;
        let header = Header {
            version: u16::from_be_bytes([h[0], h[1]]),
            centre: h[2],
            controller: u32::from_be_bytes([h[3], h[4], h[5], h[6]]),
            intersection: h[7],
            sequence: h[8],
            kind,
        };
        let declared_count = usize::from(h[10]);
        let mut rest = &checked[2 + HEADER_LEN..];
        let mut values = Vec::with_capacity(declared_count);
        while values.len() < declared_count && !rest.is_empty() {
            let position = values.len() + 1;
            let [index, length, ..] = *rest else { return Err(FrameError::ValueOverrun { position }) };
            if usize::from(length) < ADDRESS_LEN {
                return Err(FrameError::ValueLength { position, length });
            }
            let end = 2 + usize::from(length);
            let item = rest.get(..end).ok_or(FrameError::ValueOverrun { position })?;
            values.push(DataValue {
                index,
                address: Address::new(item[2], item[3], item[4], item[5]),
                value: item[6..].to_vec(),
            });
            rest = &rest[end..];
        }
        if values.len() != declared_count || !rest.is_empty() {
            return Err(FrameError::Count { declared: declared_count, found: values.len(), trailing: rest.len() });
        }
        Ok(Frame { header, values })
    }
}

/// Finds frames in an escaped byte stream (TCP, RS-232): bytes before a
/// start byte are skipped, a frame ends at its unescaped end byte. A
/// frame longer than the length field allows is dropped whole, so a
/// peer sending without delimiters cannot make it grow without bound.
#[derive(Debug, Default)]
pub struct Deframer {
    body: Vec<u8>,
    in_frame: bool,
    escaped: bool,
}

impl Deframer {
    pub fn new() -> Deframer {
        Deframer::default()
    }

    /// Takes the next byte; a frame's end byte gives the frame, or why it
    /// is not one.
    pub fn push(&mut self, byte: u8) -> Option<Result<Frame, FrameError>> {
        if !self.in_frame {
            if byte == START {
                self.start();
            }
            return None;
        }
        if self.escaped {
            self.escaped = false;
            if !matches!(byte, START | END | ESCAPE) {
                let at = self.body.len() + 1;
                self.in_frame = false;
                return Some(Err(FrameError::BadEscape { byte, at }));
            }
        } else if byte == ESCAPE {
            self.escaped = true;
            return None;
        } else if byte == END {
            self.in_frame = false;
            return Some(Frame::from_body(&self.body));
        } else if byte == START {
            // A new frame began before the last one ended: that one is
            // lost, this one may be whole.
            let at = self.body.len() + 1;
            self.start();
            return Some(Err(FrameError::UnescapedDelimiter { byte, at }));
        }
        if self.body.len() == MAX_BODY_LEN {
            self.in_frame = false;
            return Some(Err(FrameError::TooLong { len: MAX_BODY_LEN + 1 }));
        }
        self.body.push(byte);
        None
    }

    fn start(&mut self) {
        self.body.clear();
        self.in_frame = true;
        self.escaped = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured frame of STANDARDS.md §1.1 (a UDP set: centre control
    /// stage 1, plan 1, mode 0x21).
    const CAPTURED: [u8; 38] = [
        0x7E, 0x00, 0x22, 0x01, 0x00, 0x05, 0x00, 0x0C, 0x48, 0xFC, 0x01, 0x13, 0x30, 0x03, 0x01, 0x05, 0x11, 0x01,
        0x02, 0x01, 0x01, 0x02, 0x05, 0x11, 0x01, 0x03, 0x01, 0x01, 0x03, 0x05, 0x11, 0x01, 0x04, 0x01, 0x21, 0xE4,
        0x43, 0x7D,
    ];

    fn captured() -> Frame {
        let value =
            |index, attribute, v| DataValue { index, address: Address::new(0x11, 1, attribute, 1), value: vec![v] };
        Frame {
            header: Header {
                version: 0x0100,
                centre: 5,
                controller: 0x000C_48FC,
                intersection: 1,
                sequence: 0x13,
                kind: FrameType::Set,
            },
            values: vec![value(1, 2, 1), value(2, 3, 1), value(3, 4, 0x21)],
        }
    }

    #[test]
    fn the_captured_frame_decodes_and_encodes_byte_for_byte() {
        let frame = Frame::decode(&CAPTURED, Escaping::Raw).expect("the captured frame");
        assert_eq!(frame, captured());
        assert_eq!(frame.encode(Escaping::Raw).expect("encodes"), CAPTURED);
        // Nothing in it needs escaping, so TCP sends the same bytes.
        assert_eq!(frame.encode(Escaping::Escaped).expect("encodes"), CAPTURED);
        assert_eq!(Frame::decode(&CAPTURED, Escaping::Escaped), Ok(frame));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_a_typed_error() {
        for at in 1..CAPTURED.len() - 1 {
            for bit in 0..8 {
                let mut wire = CAPTURED;
                wire[at] ^= 1 << bit;
                assert!(Frame::decode(&wire, Escaping::Raw).is_err(), "byte {at} bit {bit}");
            }
        }
        let mut wire = CAPTURED;
        wire[CAPTURED.len() - 3] ^= 1;
        assert_eq!(Frame::decode(&wire, Escaping::Raw), Err(FrameError::Crc { declared: 0xE543, computed: 0xE443 }));
    }

    #[test]
    fn escaping_covers_delimiters_and_the_escape_byte_everywhere_between_them() {
        let mut frame = captured();
        frame.header.controller = 0x7E7D_5C01;
        frame.values[2].value = vec![0x7D];
        let raw = frame.encode(Escaping::Raw).expect("encodes");
        let escaped = frame.encode(Escaping::Escaped).expect("encodes");
        // Four bytes to escape (three in the id, one value), plus any the
        // CRC happens to hold.
        let in_body = raw[1..raw.len() - 1].iter().filter(|b| matches!(**b, START | END | ESCAPE)).count();
        assert!(in_body >= 4);
        assert_eq!(escaped.len(), raw.len() + in_body);
        assert_eq!(&escaped[6..12], &[ESCAPE, 0x7E, ESCAPE, 0x7D, ESCAPE, 0x5C]);
        assert_eq!(Frame::decode(&escaped, Escaping::Escaped), Ok(frame.clone()));
        assert_eq!(Frame::decode(&raw, Escaping::Raw), Ok(frame));
        assert!(matches!(Frame::decode(&raw, Escaping::Escaped), Err(FrameError::UnescapedDelimiter { .. })));
    }

    #[test]
    fn malformed_frames_name_what_is_wrong() {
        assert_eq!(Frame::decode(&[], Escaping::Raw), Err(FrameError::NoStart));
        assert_eq!(Frame::decode(&[START], Escaping::Raw), Err(FrameError::NoEnd));
        assert_eq!(Frame::decode(&[START, END], Escaping::Raw), Err(FrameError::Short { len: 0 }));
        assert_eq!(Frame::decode(&CAPTURED[..37], Escaping::Raw), Err(FrameError::NoEnd));
        let mut wire = CAPTURED.to_vec();
        wire.insert(1, ESCAPE);
        assert_eq!(Frame::decode(&wire, Escaping::Escaped), Err(FrameError::BadEscape { byte: 0x00, at: 2 }));
        let mut frame = captured();
        frame.header.kind = FrameType::Report;
        let mut wire = frame.encode(Escaping::Raw).expect("encodes");
        wire[12] = 0x99;
        let body = &wire[1..wire.len() - 1];
        let crc = crc16(&body[..body.len() - 2]).to_be_bytes();
        let n = wire.len();
        wire[n - 3..n - 1].copy_from_slice(&crc);
        assert_eq!(Frame::decode(&wire, Escaping::Raw), Err(FrameError::UnknownFrameType(0x99)));
    }

    #[test]
    fn counts_and_value_lengths_are_checked_against_the_bytes() {
        // Length and CRC put right, so only the values are wrong.
        let reframe = |mut body: Vec<u8>| {
            let len = body.len() as u16;
            body[..2].copy_from_slice(&len.to_be_bytes());
            let crc = crc16(&body);
            body.extend_from_slice(&crc.to_be_bytes());
            Frame::from_body(&body)
        };
        let header = [0, 0, 0x01, 0x00, 5, 0, 0, 0, 1, 1, 7, 0x10];
        let mut body = header.to_vec();
        body.push(1);
        assert_eq!(reframe(body.clone()), Err(FrameError::Count { declared: 1, found: 0, trailing: 0 }));
        body.extend_from_slice(&[1, 3, 1, 1, 0]);
        assert_eq!(reframe(body.clone()), Err(FrameError::ValueLength { position: 1, length: 3 }));
        let n = body.len();
        body[n - 4] = 9;
        assert_eq!(reframe(body.clone()), Err(FrameError::ValueOverrun { position: 1 }));
        body[n - 4] = 4;
        body.push(0);
        let whole = reframe(body.clone()).expect("one whole value");
        assert_eq!(whole.values[0].address, Address::new(1, 1, 0, 0));
        body.extend_from_slice(&[0xAA, 0xBB]);
        assert_eq!(reframe(body), Err(FrameError::Count { declared: 1, found: 1, trailing: 2 }));
    }

    #[test]
    fn encoding_refuses_what_the_one_byte_fields_cannot_say() {
        let mut frame = captured();
        frame.values[0].value = vec![0; MAX_VALUE_LEN + 1];
        assert!(matches!(frame.encode(Escaping::Raw), Err(EncodeError::ValueTooLong { index: 1, .. })));
        frame.values = vec![frame.values[1].clone(); MAX_VALUES + 1];
        assert_eq!(frame.encode(Escaping::Raw), Err(EncodeError::TooManyValues(MAX_VALUES + 1)));
    }

    #[test]
    fn the_deframer_finds_frames_in_a_stream_with_noise_between() {
        let mut frame = captured();
        frame.header.controller = 0x7E7D_5C7E;
        let one = frame.encode(Escaping::Escaped).expect("encodes");
        let mut stream = vec![0x00, 0x7D, 0x5C];
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&[0xAA, 0xBB]);
        stream.extend_from_slice(&CAPTURED);
        let mut deframer = Deframer::new();
        let got: Vec<_> = stream.iter().filter_map(|&b| deframer.push(b)).collect();
        assert_eq!(got, vec![Ok(frame), Ok(captured())]);
    }

    #[test]
    fn the_deframer_drops_an_endless_frame_and_recovers() {
        let mut deframer = Deframer::new();
        let mut errors = Vec::new();
        deframer.push(START);
        for _ in 0..MAX_BODY_LEN + 10 {
            errors.extend(deframer.push(0x01));
        }
        assert_eq!(errors, vec![Err(FrameError::TooLong { len: MAX_BODY_LEN + 1 })]);
        let got: Vec<_> = CAPTURED.iter().filter_map(|&b| deframer.push(b)).collect();
        assert_eq!(got, vec![Ok(captured())]);
    }
}
