//! Turning the listed origin chunks into a [`ChangeSet`].
//!
//! The kernel lists exceptions in the order they were committed, so the origin chunks arrive
//! unsorted. They are sorted (a u64 per exception: the smallest form the result can take),
//! checked for duplicates (each origin chunk is copied at most once per snapshot) and for
//! byte ranges past 64 bits, then pushed in order so neighbouring chunks merge into one extent.

use super::geometry::Geometry;
use super::problem::StoreProblem;
use crate::changeset::{ChangeSetBuilder, Extent, ExtentKind};
use crate::error::Result;
use crate::units::Bytes;
use crate::ChangeSet;

/// The change set for the origin chunks `old_chunks` of the store `name` with geometry `geom`.
pub fn into_change_set(geom: &Geometry, mut old_chunks: Vec<u64>, name: &str) -> Result<ChangeSet> {
    old_chunks.sort_unstable();
    if let Some(w) = old_chunks.windows(2).find(|w| w[0] == w[1]) {
        return Err(StoreProblem::DuplicateOldChunk(w[0]).into_error(name));
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
    let mut builder = ChangeSetBuilder::new(Bytes(chunk));
    for c in old_chunks {
        builder.push(Extent::new(c * chunk, chunk, ExtentKind::Changed));
    }
    builder.build()
}
