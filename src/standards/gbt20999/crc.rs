//! The frame check of GB/T 20999-2017: CRC-16 with the generator
//! x¹⁶+x¹²+x²+1 (0x1005), initial value 0, no reflection and no final
//! XOR, over the unescaped bytes from the length field to the last data
//! byte (`/work/shared/STANDARDS.md` §1.1 has the sources and the captured
//! frame it was checked against).

/// The generator polynomial without its x¹⁶ term.
pub const POLYNOMIAL: u16 = 0x1005;

/// A byte's contribution, computed once at compile time: the table turns
/// the bitwise loop into one lookup per byte.
const TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ POLYNOMIAL } else { crc << 1 };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// The CRC of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ b)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain shift-register form, straight from the generator: the
    /// table form must agree with it.
    fn bitwise(bytes: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in bytes {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 { (crc << 1) ^ POLYNOMIAL } else { crc << 1 };
            }
        }
        crc
    }

    #[test]
    fn the_captured_frame_checks_out() {
        // The captured set frame of STANDARDS.md §1.1, length field to
        // last data byte.
        let body = [
            0x00, 0x22, 0x01, 0x00, 0x05, 0x00, 0x0C, 0x48, 0xFC, 0x01, 0x13, 0x30, 0x03, 0x01, 0x05, 0x11, 0x01, 0x02,
            0x01, 0x01, 0x02, 0x05, 0x11, 0x01, 0x03, 0x01, 0x01, 0x03, 0x05, 0x11, 0x01, 0x04, 0x01, 0x21,
        ];
        assert_eq!(crc16(&body), 0xE443);
        assert_eq!(bitwise(&body), 0xE443);
    }

    #[test]
    fn table_and_shift_register_agree() {
        let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for n in 0..bytes.len() {
            assert_eq!(crc16(&bytes[..n]), bitwise(&bytes[..n]), "first {n} bytes");
        }
        assert_eq!(crc16(&[]), 0);
    }
}
