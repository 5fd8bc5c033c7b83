//! Decoding the exception records of one metadata area.
//!
//! An area holds `E` records of `(old_chunk, new_chunk)`, u64 little-endian each. The list
//! ends at the first record whose `new_chunk` is 0 (the kernel zeroes an area before using it
//! and ignores what follows the first zero); an area with no zero record is full and the list
//! continues in the next area. A large area may arrive in several pieces, so decoding takes a
//! slice of records and the index of its first record.

use super::collect::OldChunks;
use super::geometry::{Geometry, EXCEPTION_LEN};
use super::problem::StoreProblem;

/// How a run of records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every record was an exception: the list goes on after these bytes.
    Continues,
    /// A record with `new_chunk == 0` ended the list.
    Ended,
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// Decode the records in `bytes` (a whole number of records, record `first_entry` of area
/// `area` first), checking each `new_chunk` and appending each `old_chunk` to `out`.
pub fn scan_records(
    geom: &Geometry,
    area: u64,
    first_entry: u64,
    bytes: &[u8],
    out: &mut OldChunks,
) -> Result<Scan, StoreProblem> {
    debug_assert_eq!(bytes.len() as u64 % EXCEPTION_LEN, 0);
    let store_chunks = geom.store_chunks();
    // The checks only note a bad record; which one it was is found after the loop, so the
    // loop itself has no branch but the end of the list.
    let mut bad = false;
    let mut ended = false;
    let mut decoded = 0;
    for rec in bytes.chunks_exact(EXCEPTION_LEN as usize) {
        let new_chunk = le_u64(&rec[8..16]);
        if new_chunk == 0 {
            ended = true;
            break;
        }
        bad |= new_chunk >= store_chunks || geom.is_metadata(new_chunk);
        out.push(le_u64(&rec[..8]));
        decoded += 1;
    }
    if bad {
        let records = bytes.chunks_exact(EXCEPTION_LEN as usize).take(decoded);
        for (i, rec) in records.enumerate() {
            geom.check_new_chunk(area, first_entry + i as u64, le_u64(&rec[8..16]))?;
        }
    }
    Ok(if ended { Scan::Ended } else { Scan::Continues })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cow::header::Header;
    use crate::units::Sectors;

    fn records(pairs: &[(u64, u64)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(o, n)| o.to_le_bytes().into_iter().chain(n.to_le_bytes()))
            .collect()
    }

    #[test]
    fn stops_at_first_zero_new_chunk() {
        let g = Geometry::new(
            &Header {
                chunk_size: Sectors(1),
            },
            512 * 100,
        )
        .unwrap();
        let mut out = OldChunks::default();
        let bytes = records(&[(7, 2), (3, 3), (9, 0), (5, 4)]);
        assert_eq!(scan_records(&g, 0, 0, &bytes, &mut out), Ok(Scan::Ended));
        assert_eq!(out.as_slice(), &[7, 3]);
        assert_eq!(
            scan_records(&g, 0, 0, &bytes[..32], &mut out),
            Ok(Scan::Continues)
        );
        assert!(matches!(
            scan_records(&g, 0, 5, &records(&[(1, 34)]), &mut out),
            Err(StoreProblem::NewChunkIsMetadata { entry: 5, .. })
        ));
    }
}
