//! Where things live in an exception store of a given chunk size and length.
//!
//! Chunk 0 is the header. With `E = chunk_bytes / 16` exceptions per metadata area, area `k`
//! sits at chunk `1 + k(E + 1)` and the `E` chunks after it hold data, so the store is a
//! repeating stride of one metadata chunk followed by `E` data chunks.

use super::header::Header;
use super::problem::StoreProblem;

/// Bytes per exception record: `old_chunk` and `new_chunk`, both u64 little-endian.
pub const EXCEPTION_LEN: u64 = 16;

/// The layout of one store: chunk size, exceptions per area and the store's length in chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    chunk_bytes: u64,
    per_area: u64,
    store_chunks: u64,
    /// The inverse of the stride `E + 1` modulo 2^64 (it is odd: `E` is a power of two), so
    /// that "is a multiple of the stride" is a multiplication instead of a division.
    stride_inverse: u64,
    /// `u64::MAX / (E + 1)`: the largest product of a multiple of the stride and its inverse.
    stride_limit: u64,
}

/// The inverse of odd `d` modulo 2^64 (Newton's iteration doubles the correct low bits each
/// step, from 3 bits for `x = d`: five steps give 96).
fn inverse_mod_2_64(d: u64) -> u64 {
    let mut x = d;
    for _ in 0..5 {
        x = x.wrapping_mul(2u64.wrapping_sub(d.wrapping_mul(x)));
    }
    x
}

impl Geometry {
    /// The layout of a store with this header and `store_len` bytes.
    pub fn new(header: &Header, store_len: u64) -> Result<Self, StoreProblem> {
        let chunk_bytes = header
            .chunk_size
            .to_bytes()
            .ok_or(StoreProblem::BadChunkSize(header.chunk_size.0))?
            .0;
        let per_area = chunk_bytes / EXCEPTION_LEN;
        if !per_area.is_power_of_two() {
            return Err(StoreProblem::BadChunkSize(header.chunk_size.0));
        }
        Ok(Geometry {
            chunk_bytes,
            per_area,
            store_chunks: store_len / chunk_bytes,
            stride_inverse: inverse_mod_2_64(per_area + 1),
            stride_limit: u64::MAX / (per_area + 1),
        })
    }

    /// Bytes per chunk.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Exceptions per metadata area (`E`).
    pub fn per_area(&self) -> u64 {
        self.per_area
    }

    /// Whole chunks in the store.
    pub fn store_chunks(&self) -> u64 {
        self.store_chunks
    }

    /// Byte offset of metadata area `k`, or `None` if it overflows 64 bits.
    pub fn area_offset(&self, k: u64) -> Option<u64> {
        k.checked_mul(self.per_area + 1)?
            .checked_add(1)?
            .checked_mul(self.chunk_bytes)
    }

    /// True if data chunk `chunk` (non-zero) is a metadata area: chunks `1 + k(E + 1)`, the
    /// ones where `chunk - 1` is a multiple of the odd stride `E + 1`, which holds exactly when
    /// its product with the stride's inverse is at most `u64::MAX / (E + 1)`.
    #[inline]
    pub fn is_metadata(&self, chunk: u64) -> bool {
        (chunk - 1).wrapping_mul(self.stride_inverse) <= self.stride_limit
    }

    /// Check that exception `entry` of area `area` may point at data chunk `new_chunk` (non-zero):
    /// inside the store and neither the header nor a metadata area.
    pub fn check_new_chunk(
        &self,
        area: u64,
        entry: u64,
        new_chunk: u64,
    ) -> Result<(), StoreProblem> {
        if new_chunk >= self.store_chunks {
            return Err(StoreProblem::NewChunkOutside {
                area,
                entry,
                new_chunk,
                store_chunks: self.store_chunks,
            });
        }
        if self.is_metadata(new_chunk) {
            return Err(StoreProblem::NewChunkIsMetadata {
                area,
                entry,
                new_chunk,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Sectors;

    #[test]
    fn stride_and_checks() {
        let h = Header {
            chunk_size: Sectors(8),
        };
        let g = Geometry::new(&h, 4096 * 1000).unwrap();
        assert_eq!(g.per_area(), 256);
        assert_eq!(g.area_offset(0), Some(4096));
        assert_eq!(g.area_offset(2), Some((1 + 2 * 257) * 4096));
        assert!(g.check_new_chunk(0, 0, 2).is_ok());
        assert!(g.check_new_chunk(0, 0, 257).is_ok());
        assert!(g.check_new_chunk(0, 0, 258).is_err());
        assert!(g.check_new_chunk(0, 0, 1).is_err());
        assert!(g.check_new_chunk(0, 0, 999).is_ok());
        assert!(g.check_new_chunk(0, 0, 1000).is_err());
        assert_eq!(g.area_offset(u64::MAX), None);
        for c in 1..5000u64 {
            assert_eq!(g.is_metadata(c), (c - 1) % 257 == 0, "{c}");
        }
        for k in [1u64 << 40, u64::MAX / 257 - 1] {
            assert!(g.is_metadata(1 + k * 257));
            assert!(!g.is_metadata(2 + k * 257));
        }
    }
}
