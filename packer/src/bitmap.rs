//! Block and inode bitmaps: one block per group each.

use crate::crc::crc32c_raw;
use crate::BLOCK_SIZE;

/// A one-block bitmap.
pub struct Bitmap(pub Vec<u8>);

impl Bitmap {
    /// An all-clear bitmap.
    pub fn new() -> Self {
        Bitmap(vec![0u8; BLOCK_SIZE])
    }

    /// Set bits `[start, end)`.
    pub fn set_range(&mut self, start: usize, end: usize) {
        let mut i = start;
        while i < end && i & 7 != 0 {
            self.0[i / 8] |= 1 << (i % 8);
            i += 1;
        }
        while i + 8 <= end {
            self.0[i / 8] = 0xFF;
            i += 8;
        }
        while i < end {
            self.0[i / 8] |= 1 << (i % 8);
            i += 1;
        }
    }

    /// The group-descriptor checksum of the first `bits` bits.
    pub fn checksum(&self, csum_seed: u32, bits: usize) -> u32 {
        crc32c_raw(csum_seed, &self.0[..bits / 8])
    }
}

impl Default for Bitmap {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_range_sets_exactly_the_range() {
        let mut b = Bitmap::new();
        b.set_range(3, 21);
        for i in 0..64 {
            let set = b.0[i / 8] & (1 << (i % 8)) != 0;
            assert_eq!(set, (3..21).contains(&i), "bit {i}");
        }
    }
}
