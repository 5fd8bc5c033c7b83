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
    let new_chunk = |rec: &[u8]| le_u64(&rec[8..16]);
    // Three short loops over bytes in the L1 cache, each simple enough to run at a few
    // cycles a record: where the list ends, whether any record before that is bad (which one
    // is found only then), and the old chunks.
    let records = bytes.chunks_exact(EXCEPTION_LEN as usize);
    let end = records.clone().position(|rec| new_chunk(rec) == 0);
    let listed = &bytes[..end.unwrap_or(records.len()) * EXCEPTION_LEN as usize];
    let store_chunks = geom.store_chunks();
    let bad = listed
        .chunks_exact(EXCEPTION_LEN as usize)
        .map(new_chunk)
        .fold(false, |bad, c| {
            bad | (c >= store_chunks) | geom.is_metadata(c)
        });
    if bad {
        let records = listed.chunks_exact(EXCEPTION_LEN as usize);
        for (i, rec) in records.enumerate() {
            geom.check_new_chunk(area, first_entry + i as u64, new_chunk(rec))?;
        }
    }
    out.extend(
        listed
            .chunks_exact(EXCEPTION_LEN as usize)
            .map(|rec| le_u64(&rec[..8])),
    );
    Ok(if end.is_some() {
        Scan::Ended
    } else {
        Scan::Continues
    })
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
        // The bad record is named by its place; records after the end are never checked.
        assert!(matches!(
            scan_records(&g, 0, 8, &records(&[(1, 2), (2, 3), (4, 100)]), &mut out),
            Err(StoreProblem::NewChunkOutside {
                entry: 10,
                new_chunk: 100,
                ..
            })
        ));
        let mut out = OldChunks::default();
        let after_end = records(&[(1, 2), (2, 0), (4, 100), (6, 34)]);
        assert_eq!(
            scan_records(&g, 0, 0, &after_end, &mut out),
            Ok(Scan::Ended)
        );
        assert_eq!(out.as_slice(), &[1]);
    }
}
