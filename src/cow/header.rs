//! The exception store's header: the first 16 bytes of chunk 0.
//!
//! Layout (all little-endian u32): magic `0x70416e53` ("SnAp"), valid flag (1 ok, 0 invalid),
//! version (only 1 exists), chunk size in 512-byte sectors (a power of two). The rest of
//! chunk 0 is zero and carries nothing we need.

use super::problem::StoreProblem;
use crate::units::Sectors;

/// The magic number at offset 0: the bytes "SnAp" read as a little-endian u32.
pub const MAGIC: u32 = 0x7041_6e53;

/// The only on-disk version the kernel writes or accepts.
pub const VERSION: u32 = 1;

/// Bytes of chunk 0 that carry the header.
pub const HEADER_LEN: usize = 16;

/// The largest chunk size the kernel accepts (`INT_MAX >> SECTOR_SHIFT` rounded down to a
/// power of two), in sectors. Anything larger cannot come from dm-snapshot.
pub const MAX_CHUNK_SECTORS: u64 = 1 << 21;

/// A decoded and checked header: the store is formatted, valid, version 1, with a sane chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The chunk size every structure of the store (and every exception) is measured in.
    pub chunk_size: Sectors,
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Decode the header from the start of chunk 0 and refuse anything lvmsync can't trust.
///
/// Checks in the kernel's order of meaning: unformatted (magic 0), foreign magic, invalidated
/// snapshot (valid 0: overflowed or hit an I/O error), unknown version, then the chunk size.
pub fn parse_header(bytes: &[u8]) -> Result<Header, StoreProblem> {
    if bytes.len() < HEADER_LEN {
        return Err(StoreProblem::Truncated {
            needed: HEADER_LEN as u64,
            have: bytes.len() as u64,
            what: "the header".into(),
        });
    }
    let magic = le_u32(bytes, 0);
    if magic == 0 {
        return Err(StoreProblem::Unformatted);
    }
    if magic != MAGIC {
        return Err(StoreProblem::BadMagic(magic));
    }
    let valid = le_u32(bytes, 4);
    if valid == 0 {
        return Err(StoreProblem::Invalidated);
    }
    let version = le_u32(bytes, 8);
    if version != VERSION {
        return Err(StoreProblem::UnknownVersion(version));
    }
    let chunk = u64::from(le_u32(bytes, 12));
    if chunk == 0 || !chunk.is_power_of_two() || chunk > MAX_CHUNK_SECTORS {
        return Err(StoreProblem::BadChunkSize(chunk));
    }
    Ok(Header {
        chunk_size: Sectors(chunk),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, valid: u32, version: u32, chunk: u32) -> Vec<u8> {
        [magic, valid, version, chunk]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    #[test]
    fn accepts_kernel_header() {
        let h = parse_header(&header(MAGIC, 1, 1, 8)).unwrap();
        assert_eq!(h.chunk_size, Sectors(8));
        assert_eq!(&header(MAGIC, 1, 1, 8)[..4], b"SnAp");
    }

    #[test]
    fn refuses_each_bad_field() {
        assert_eq!(
            parse_header(&header(0, 0, 0, 0)),
            Err(StoreProblem::Unformatted)
        );
        assert_eq!(
            parse_header(&header(1, 1, 1, 8)),
            Err(StoreProblem::BadMagic(1))
        );
        assert_eq!(
            parse_header(&header(MAGIC, 0, 1, 8)),
            Err(StoreProblem::Invalidated)
        );
        assert_eq!(
            parse_header(&header(MAGIC, 1, 2, 8)),
            Err(StoreProblem::UnknownVersion(2))
        );
        for bad in [0, 3, 12, 1 << 22] {
            assert_eq!(
                parse_header(&header(MAGIC, 1, 1, bad)),
                Err(StoreProblem::BadChunkSize(u64::from(bad)))
            );
        }
        assert!(matches!(
            parse_header(&[0x53, 0x6e]),
            Err(StoreProblem::Truncated { .. })
        ));
    }
}
