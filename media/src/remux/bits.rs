//! MSB-first bit reader shared by the AudioSpecificConfig and SPS parsers, whose fields are not byte
//! aligned. Every read is checked and yields `None` past the end, so callers turn that into a typed error.

pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// Reads `n <= 32` bits as an unsigned big-endian number.
    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        if n > 32 {
            return None;
        }
        let mut value: u64 = 0;
        for _ in 0..n {
            value = (value << 1) | u64::from(self.bit()?);
        }
        u32::try_from(value).ok()
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.data.len().checked_mul(8)? {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Unsigned Exp-Golomb code ue(v), ITU-T H.264 9.1.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut leading_zeros = 0u32;
        while !self.bit()? {
            leading_zeros += 1;
            // 2^32 - 1 is the largest value that fits the u32 result; longer prefixes are corrupt data.
            if leading_zeros > 31 {
                return None;
            }
        }
        let suffix = u64::from(self.bits(leading_zeros)?);
        let value = (1u64 << leading_zeros) - 1 + suffix;
        u32::try_from(value).ok()
    }

    /// Signed Exp-Golomb code se(v), ITU-T H.264 9.1.1.
    pub(crate) fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let value = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fixed_width_fields_and_stops_at_end() {
        let mut r = BitReader::new(&[0b1010_1100, 0xff]);
        assert_eq!(r.bits(3), Some(0b101));
        assert_eq!(r.bits(5), Some(0b01100));
        assert_eq!(r.bits(8), Some(0xff));
        assert_eq!(r.bit(), None);
        assert_eq!(BitReader::new(&[]).bits(1), None);
        assert_eq!(BitReader::new(&[0; 8]).bits(33), None);
        assert_eq!(BitReader::new(&[0]).skip(9), None);
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0,1,2,3,4 ; as se: 0,1,-1,2,-2
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        let ue: Vec<_> = (0..5).map(|_| r.ue()).collect();
        assert_eq!(ue, vec![Some(0), Some(1), Some(2), Some(3), Some(4)]);
        let mut r = BitReader::new(&data);
        let se: Vec<_> = (0..5).map(|_| r.se()).collect();
        assert_eq!(se, vec![Some(0), Some(1), Some(-1), Some(2), Some(-2)]);
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0]).ue(), None);
    }
}
