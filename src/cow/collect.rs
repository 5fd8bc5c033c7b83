//! Turning the listed origin chunks into a [`ChangeSet`].
//!
//! The kernel lists exceptions in the order they were committed, so the origin chunks arrive
//! unsorted. They must come out sorted, checked for duplicates (each origin chunk is copied at
//! most once per snapshot) and for byte ranges past 64 bits, with consecutive chunks merged.
//! Two ways, same result: when the chunks are dense (a bitmap up to the largest one is no
//! bigger than the list itself, the usual case) one bit per chunk sorts them in a single pass;
//! otherwise a radix sort does. Either way memory stays within twice the list.

use super::geometry::Geometry;
use super::problem::StoreProblem;
use crate::changeset::{Extent, ExtentKind};
use crate::error::Result;
use crate::units::Bytes;
use crate::ChangeSet;

/// The change set for the origin chunks `old_chunks` of the store `name` with geometry `geom`.
pub fn into_change_set(geom: &Geometry, old_chunks: Vec<u64>, name: &str) -> Result<ChangeSet> {
    let chunk = geom.chunk_bytes();
    let Some(&max) = old_chunks.iter().max() else {
        return Ok(ChangeSet::empty(Bytes(chunk)));
    };
    let fits = max
        .checked_add(1)
        .and_then(|n| n.checked_mul(chunk))
        .is_some();
    if !fits {
        return Err(StoreProblem::OldChunkTooLarge(max).into_error(name));
    }
    let runs = if max / 64 < old_chunks.len() as u64 {
        runs_by_bitmap(old_chunks, max)
    } else {
        runs_by_sort(old_chunks)
    }
    .map_err(|p| p.into_error(name))?;
    ChangeSet::from_sorted(Bytes(chunk), runs.into_extents(chunk))
}

/// Sorted runs of consecutive chunks, built one run at a time into the final extent list
/// (so the result is allocated once, at its exact size).
struct Runs(Vec<Extent>);

impl Runs {
    fn with_capacity(n: usize) -> Self {
        Runs(Vec::with_capacity(n))
    }

    /// Add `n` chunks from chunk `first` (above every chunk added so before), in chunk units.
    fn push(&mut self, first: u64, n: u64) {
        match self.0.last_mut() {
            Some(last) if last.offset.0 + last.length.0 == first => last.length.0 += n,
            _ => self.0.push(Extent::new(first, n, ExtentKind::Changed)),
        }
    }

    /// The runs as byte extents (chunk units scaled in place; the caller checked the range).
    fn into_extents(mut self, chunk: u64) -> Vec<Extent> {
        for e in &mut self.0 {
            e.offset.0 *= chunk;
            e.length.0 *= chunk;
        }
        self.0
    }
}

/// Sorted runs, by setting one bit per chunk in `0..=max`.
fn runs_by_bitmap(old_chunks: Vec<u64>, max: u64) -> Result<Runs, StoreProblem> {
    let mut words = vec![0u64; (max / 64 + 1) as usize];
    for c in old_chunks {
        let (w, bit) = ((c / 64) as usize, 1u64 << (c % 64));
        if words[w] & bit != 0 {
            return Err(StoreProblem::DuplicateOldChunk(c));
        }
        words[w] |= bit;
    }
    // A run starts at a set bit whose lower neighbour (possibly in the word below) is clear.
    let starts = |i: usize, w: u64| {
        let carry = i.checked_sub(1).map_or(0, |p| words[p] >> 63);
        w & !((w << 1) | carry)
    };
    let count: u32 = words
        .iter()
        .enumerate()
        .map(|(i, &w)| starts(i, w).count_ones())
        .sum();
    let mut runs = Runs::with_capacity(count as usize);
    for (i, &w) in words.iter().enumerate() {
        let mut rest = w;
        while rest != 0 {
            let lo = rest.trailing_zeros();
            let len = (rest >> lo).trailing_ones();
            runs.push(i as u64 * 64 + u64::from(lo), u64::from(len));
            rest = if lo + len >= 64 {
                0
            } else {
                rest & (u64::MAX << (lo + len))
            };
        }
    }
    Ok(runs)
}

/// Sorted runs, by radix-sorting the chunks.
fn runs_by_sort(mut old_chunks: Vec<u64>) -> Result<Runs, StoreProblem> {
    super::radix::sort_u64(&mut old_chunks);
    let mut count = 1usize;
    for w in old_chunks.windows(2) {
        if w[0] == w[1] {
            return Err(StoreProblem::DuplicateOldChunk(w[0]));
        }
        count += usize::from(w[1] != w[0] + 1);
    }
    let mut runs = Runs::with_capacity(count);
    for c in old_chunks {
        runs.push(c, 1);
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(r: Runs) -> Vec<(u64, u64)> {
        r.into_extents(1)
            .iter()
            .map(|e| (e.offset.0, e.length.0))
            .collect()
    }

    fn reference(chunks: &[u64]) -> Option<Vec<(u64, u64)>> {
        let mut v = chunks.to_vec();
        v.sort_unstable();
        if v.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for c in v {
            match runs.last_mut() {
                Some((f, n)) if *f + *n == c => *n += 1,
                _ => runs.push((c, 1)),
            }
        }
        Some(runs)
    }

    proptest! {
        /// Both ways give the reference runs, and both find duplicates.
        #[test]
        fn bitmap_and_sort_agree(chunks in prop::collection::vec(
            prop_oneof![0u64..300, 0u64..5000, any::<u64>().prop_map(|c| c >> 8)], 1..400)) {
            let want = reference(&chunks);
            let max = *chunks.iter().max().unwrap();
            if max < 1 << 20 {
                prop_assert_eq!(runs_by_bitmap(chunks.clone(), max).ok().map(pairs), want.clone());
            }
            prop_assert_eq!(runs_by_sort(chunks).ok().map(pairs), want);
        }
    }
}
