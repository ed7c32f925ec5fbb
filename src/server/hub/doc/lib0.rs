//! A reader of the lib0 v1 encoding (Yjs' variable-length integers, length-
//! prefixed byte strings) that allocates nothing: the pre-scans of updates
//! and awareness updates use it to bound every count a client wrote by the
//! bytes that follow it, before yrs reserves anything by those counts.
//!
//! It is stricter than yrs' reader wherever they could differ (a varint longer
//! than ten bytes, or too large for its type, is refused here), so whatever it
//! accepts, yrs reads byte for byte the same way.

/// Why bytes are not lib0 v1 as the pre-scan reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("it ends in the middle of a value")]
    End,
    #[error("a number is too large or too long")]
    Varint,
    #[error("a string is not UTF-8")]
    Utf8,
}

/// The longest varint read (ten bytes hold 70 bits: any u64).
const MAX_VARINT_BYTES: usize = 10;

/// A cursor over lib0 v1 bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// How many bytes are left: every count read is bounded by it.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub fn u8(&mut self) -> Result<u8, ReadError> {
        let byte = *self.bytes.get(self.at).ok_or(ReadError::End)?;
        self.at += 1;
        Ok(byte)
    }

    /// `len` raw bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], ReadError> {
        if len > self.remaining() {
            return Err(ReadError::End);
        }
        let slice = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(slice)
    }

    /// An unsigned varint (7 bits a byte, low first).
    pub fn var_u64(&mut self) -> Result<u64, ReadError> {
        let mut value: u64 = 0;
        for index in 0..MAX_VARINT_BYTES {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * index as u32;
            if shift >= 64 || (bits << shift) >> shift != bits {
                if bits != 0 {
                    return Err(ReadError::Varint);
                }
            } else {
                value |= bits << shift;
            }
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ReadError::Varint)
    }

    /// An unsigned varint that must fit 32 bits (yrs reads these wrapping).
    pub fn var_u32(&mut self) -> Result<u32, ReadError> {
        u32::try_from(self.var_u64()?).map_err(|_| ReadError::Varint)
    }

    /// A signed varint (sign in the first byte's bit 6); only its length
    /// matters to the pre-scan.
    pub fn var_i64(&mut self) -> Result<(), ReadError> {
        let mut byte = self.u8()?;
        for _ in 0..MAX_VARINT_BYTES - 1 {
            if byte < 0x80 {
                return Ok(());
            }
            byte = self.u8()?;
        }
        if byte < 0x80 {
            Ok(())
        } else {
            Err(ReadError::Varint)
        }
    }

    /// A length-prefixed byte string (its length bounded by what is left).
    pub fn buf(&mut self) -> Result<&'a [u8], ReadError> {
        let len = self.var_u32()? as usize;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<&'a str, ReadError> {
        std::str::from_utf8(self.buf()?).map_err(|_| ReadError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::encoding::write::Write;
    use yrs::updates::encoder::{Encoder, EncoderV1};

    #[test]
    fn varints_read_as_yrs_writes_them() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let mut encoder = EncoderV1::new();
            encoder.write_var(value);
            let bytes = encoder.to_vec();
            let mut reader = Reader::new(&bytes);
            assert_eq!(reader.var_u64(), Ok(value));
            assert_eq!(reader.remaining(), 0);
        }
        for value in [0i64, -1, 63, -64, 64, i64::MAX, i64::MIN + 1] {
            let mut encoder = EncoderV1::new();
            encoder.write_var(value);
            let bytes = encoder.to_vec();
            let mut reader = Reader::new(&bytes);
            assert_eq!(reader.var_i64(), Ok(()));
            assert_eq!(reader.remaining(), 0, "{value}");
        }
    }

    #[test]
    fn too_long_or_too_large_numbers_and_short_strings_are_refused() {
        assert_eq!(Reader::new(&[0xff; 11]).var_u64(), Err(ReadError::Varint));
        assert_eq!(Reader::new(&[0xff; 3]).var_u64(), Err(ReadError::End));
        let over_u32 = [0x80, 0x80, 0x80, 0x80, 0x10];
        assert_eq!(Reader::new(&over_u32).var_u32(), Err(ReadError::Varint));
        // 2^64 does not fit.
        let mut over_u64 = vec![0x80; 9];
        over_u64.push(0x02);
        assert_eq!(Reader::new(&over_u64).var_u64(), Err(ReadError::Varint));
        assert_eq!(Reader::new(&[5, b'a']).string(), Err(ReadError::End));
        assert_eq!(Reader::new(&[1, 0xff]).string(), Err(ReadError::Utf8));
    }
}
