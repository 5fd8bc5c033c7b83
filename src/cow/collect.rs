//! Turning the listed origin chunks into a [`ChangeSet`].
//!
//! The kernel lists exceptions in the order they were committed, so the origin chunks arrive
//! unsorted. They are radix-sorted (a u64 per exception: the smallest form the list can take),
//! checked for duplicates (each origin chunk is copied at most once per snapshot) and for
//! byte ranges past 64 bits, then turned in order into extents, consecutive chunks merged into one.

use super::geometry::Geometry;
use super::problem::StoreProblem;
use crate::changeset::{Extent, ExtentKind};
use crate::error::Result;
use crate::units::Bytes;
use crate::ChangeSet;

/// The change set for the origin chunks `old_chunks` of the store `name` with geometry `geom`.
pub fn into_change_set(geom: &Geometry, mut old_chunks: Vec<u64>, name: &str) -> Result<ChangeSet> {
    super::radix::sort_u64(&mut old_chunks);
    // One pass: duplicates (each origin chunk is copied once) and the number of runs.
    let mut runs = usize::from(!old_chunks.is_empty());
    for w in old_chunks.windows(2) {
        if w[0] == w[1] {
            return Err(StoreProblem::DuplicateOldChunk(w[0]).into_error(name));
        }
        runs += usize::from(w[1] != w[0] + 1);
    }
    let chunk = geom.chunk_bytes();
    if let Some(&last) = old_chunks.last() {
        let fits = last
            .checked_add(1)
            .and_then(|n| n.checked_mul(chunk))
            .is_some();
        if !fits {
            return Err(StoreProblem::OldChunkTooLarge(last).into_error(name));
        }
    }
    // Size the result exactly (one extent per run of consecutive chunks), then let the
    // exception list go before the result is finalised.
    let mut extents = Vec::with_capacity(runs);
    for c in old_chunks {
        match extents.last_mut() {
            Some(Extent { offset, length, .. }) if offset.0 + length.0 == c * chunk => {
                length.0 += chunk;
            }
            _ => extents.push(Extent::new(c * chunk, chunk, ExtentKind::Changed)),
        }
    }
    ChangeSet::from_sorted(Bytes(chunk), extents)
}
