//! Turning the listed origin chunks into a [`ChangeSet`].
//!
//! The kernel lists exceptions in the order they were committed, so the origin chunks arrive
//! unsorted. They must come out sorted, checked for duplicates (each origin chunk is copied at
//! most once per snapshot) and for byte ranges past 64 bits, with consecutive chunks merged.
//! Two ways, same result: when the chunks are dense (a bitmap up to the largest one is no
//! bigger than the list itself, the usual case) one bit per chunk sorts them in a single pass,
//! set area by area while later areas are still being read; otherwise a radix sort does.
//! Either way memory stays within about twice the list.

use super::geometry::Geometry;
use super::problem::StoreProblem;
use super::runs::{runs_from_bits, runs_from_sorted};
use crate::changeset::Extent;
use crate::error::Result;
use crate::units::Bytes;
use crate::ChangeSet;

/// The origin chunks of the listed exceptions in list order, and what sorting them needs to
/// know (largest, and which bits vary), gathered as each area is accepted.
///
/// While the chunks stay dense, accepting an area also sets their bits in a bitmap, so that
/// work overlaps the reading of the next areas instead of waiting for the end of the list.
#[derive(Debug)]
pub struct OldChunks {
    list: Vec<u64>,
    max: u64,
    any: u64,
    all: u64,
    /// One bit per chunk in `0..=max`, dropped for good once it would outgrow the list by
    /// more than [`BITMAP_SLACK_WORDS`].
    bits: Option<Vec<u64>>,
    /// The first chunk (in list order) whose bit was already set.
    twice: Option<u64>,
}

/// Words of bitmap allowed beyond one per listed chunk while the list is short (128 KiB:
/// chunks up to 2^20 from the first area on). Not more: bits set while the reader threads
/// stream the store through the caches miss the cache every time (session 5 tried 4 MiB, so
/// that a random-order dense store kept its bitmap from the first area on: setting its bits
/// during the reads took four times the CPU of setting them after the last read).
const BITMAP_SLACK_WORDS: usize = 1 << 14;

impl Default for OldChunks {
    fn default() -> Self {
        OldChunks {
            list: Vec::new(),
            max: 0,
            any: 0,
            all: u64::MAX,
            bits: Some(Vec::new()),
            twice: None,
        }
    }
}

impl OldChunks {
    /// Chunks collected so far (accepted or not).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Append one origin chunk.
    #[cfg(test)]
    pub fn push(&mut self, chunk: u64) {
        self.list.push(chunk);
    }

    /// Append origin chunks (an exact-size iterator: one reservation, no check per chunk).
    #[inline]
    pub fn extend(&mut self, chunks: impl ExactSizeIterator<Item = u64>) {
        self.list.extend(chunks);
    }

    /// The chunks from index `start` on are final (their area was read for good).
    pub fn accept_from(&mut self, start: usize) {
        for &c in &self.list[start..] {
            self.max = self.max.max(c);
            self.any |= c;
            self.all &= c;
        }
        let need = usize::try_from(self.max / 64 + 1).unwrap_or(usize::MAX);
        let limit = self.list.len().saturating_add(BITMAP_SLACK_WORDS);
        let Some(words) = self.bits.as_mut() else {
            return;
        };
        if need > limit {
            self.bits = None;
            return;
        }
        if need > words.len() {
            words.resize(need.max(words.len() * 2).min(limit), 0);
        }
        if let Err(c) = set_bits(words, &self.list[start..]) {
            self.twice.get_or_insert(c);
        }
    }

    /// True when the chunks `start..mid` equal the chunks after `mid` (two reads of one area).
    pub fn agree(&self, start: usize, mid: usize) -> bool {
        self.list[start..mid] == self.list[mid..]
    }

    /// The chunks collected so far, in list order.
    #[cfg(test)]
    pub fn as_slice(&self) -> &[u64] {
        &self.list
    }

    /// Forget the chunks in `range` (an earlier read of an area that was read again).
    pub fn drain(&mut self, range: std::ops::Range<usize>) {
        self.list.drain(range);
    }
}

/// The change set for the origin chunks `old_chunks` of the store `name` with geometry `geom`.
pub fn into_change_set(geom: &Geometry, old_chunks: OldChunks, name: &str) -> Result<ChangeSet> {
    let chunk = geom.chunk_bytes();
    let OldChunks {
        list,
        max,
        any,
        all,
        bits,
        twice,
    } = old_chunks;
    if list.is_empty() {
        return Ok(ChangeSet::empty(Bytes(chunk)));
    }
    let fits = max
        .checked_add(1)
        .and_then(|n| n.checked_mul(chunk))
        .is_some();
    if !fits {
        return Err(StoreProblem::OldChunkTooLarge(max).into_error(name));
    }
    let runs = if max / 64 < list.len() as u64 {
        match (bits, twice) {
            (_, Some(c)) => Err(StoreProblem::DuplicateOldChunk(c)),
            (Some(words), None) => {
                // The bitmap holds everything now: free the list before the result grows.
                drop(list);
                runs_from_bits(&words, chunk)
            }
            (None, None) => runs_by_bitmap(list, max, chunk),
        }
    } else {
        drop(bits);
        runs_by_sort(list, any ^ all, chunk)
    }
    .map_err(|p| p.into_error(name))?;
    Ok(ChangeSet::from_merged(Bytes(chunk), runs))
}

/// Set the bit of each chunk in `chunks` (each within `words`); the first already set is an error.
fn set_bits(words: &mut [u64], chunks: &[u64]) -> Result<(), u64> {
    let mut twice = None;
    for &c in chunks {
        let (w, bit) = ((c / 64) as usize, 1u64 << (c % 64));
        if words[w] & bit != 0 {
            twice.get_or_insert(c);
        }
        words[w] |= bit;
    }
    twice.map_or(Ok(()), Err)
}

/// Sorted runs, by setting one bit per chunk in `0..=max` (every chunk is at most `max`).
fn runs_by_bitmap(old_chunks: Vec<u64>, max: u64, chunk: u64) -> Result<Vec<Extent>, StoreProblem> {
    let mut words = vec![0u64; (max / 64 + 1) as usize];
    set_bits(&mut words, &old_chunks).map_err(StoreProblem::DuplicateOldChunk)?;
    drop(old_chunks);
    runs_from_bits(&words, chunk)
}

/// Sorted runs, by radix-sorting the chunks over the bits in `varying` (set where chunks differ).
fn runs_by_sort(
    old_chunks: Vec<u64>,
    varying: u64,
    chunk: u64,
) -> Result<Vec<Extent>, StoreProblem> {
    runs_from_sorted(&super::radix::sort_u64(old_chunks, varying), chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::cow::runs::tests::{pairs, reference as reference_or_duplicate};

    /// The reference runs, `None` on a duplicate chunk.
    fn reference(chunks: &[u64]) -> Option<Vec<(u64, u64)>> {
        reference_or_duplicate(chunks).ok()
    }

    proptest! {
        /// Both ways give the reference runs, and both find duplicates.
        #[test]
        fn bitmap_and_sort_agree(chunks in prop::collection::vec(
            prop_oneof![0u64..300, 0u64..5000, any::<u64>().prop_map(|c| c >> 8)], 1..400)) {
            let want = reference(&chunks);
            let max = *chunks.iter().max().unwrap();
            if max < 1 << 20 {
                prop_assert_eq!(runs_by_bitmap(chunks.clone(), max, 1).ok().map(pairs), want.clone());
            }
            let varying = chunks.iter().fold(0, |a, &c| a | c) ^ chunks.iter().fold(u64::MAX, |a, &c| a & c);
            prop_assert_eq!(runs_by_sort(chunks, varying, 1).ok().map(pairs), want);
        }

        /// Chunks accepted a batch (an area) at a time, with the bitmap kept all along or
        /// outgrown on the way, give the reference runs or refuse the duplicate.
        #[test]
        fn accepted_in_batches(chunks in prop::collection::vec(
            prop_oneof![0u64..300, 0u64..5000, 0u64..1 << 40], 1..400), batch in 1usize..40) {
            let mut collected = OldChunks::default();
            for part in chunks.chunks(batch) {
                let start = collected.len();
                part.iter().for_each(|&c| collected.push(c));
                collected.accept_from(start);
            }
            let header = crate::cow::header::Header { chunk_size: crate::units::Sectors(1) };
            let geom = Geometry::new(&header, 1 << 20).unwrap();
            let got = into_change_set(&geom, collected, "batches").ok().map(|cs| {
                cs.extents().iter().map(|e| (e.offset.0 / 512, e.length.0 / 512)).collect()
            });
            prop_assert_eq!(got, reference(&chunks));
        }
    }
}
