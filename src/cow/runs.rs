//! The final, merged byte extents of a set of chunks, built on two threads.
//!
//! The set comes as a bitmap (dense stores) or as two sorted parts (sparse ones, from
//! [`super::radix`]). Either way it is cut into a lower and an upper part; each thread counts
//! the runs of consecutive chunks that *start* in its part, the list is then allocated once at
//! the exact total, and each thread writes its runs into its own slice of it. A run that
//! starts in the lower part and goes on into the upper one belongs to the lower part, which
//! reads on into the upper part to find its end; the upper part skips it.

use super::parallel::both;
use super::problem::StoreProblem;
use crate::changeset::{Extent, ExtentKind};
use std::mem::MaybeUninit;
use std::ops::Range;

/// Sets at least this large (chunks in a list, or bitmap words) are worth a second thread.
const PARALLEL_MIN: usize = 1 << 14;

/// Where one thread writes its runs, as byte extents of `chunk`-byte chunks.
struct Sink<'a> {
    out: &'a mut [MaybeUninit<Extent>],
    written: usize,
    chunk: u64,
}

impl Sink<'_> {
    /// Add the run of `n` chunks from chunk `first` (the caller checked that its byte range
    /// fits in 64 bits; runs arrive in order and never touch).
    #[inline]
    fn push(&mut self, first: u64, n: u64) {
        let extent = Extent::new(first * self.chunk, n * self.chunk, ExtentKind::Changed);
        self.out[self.written].write(extent);
        self.written += 1;
    }
}

/// The runs of a set cut into parts 0 and 1: `count(p)` counts the runs starting in part `p`
/// (or finds why the set is bad), `fill(p, sink)` writes exactly those.
fn build(
    chunk: u64,
    parallel: bool,
    count: impl Fn(usize) -> Result<usize, StoreProblem> + Sync,
    fill: impl Fn(usize, &mut Sink) + Sync,
) -> Result<Vec<Extent>, StoreProblem> {
    let (lower, upper) = both(parallel, || count(0), || count(1));
    // The lower part's problem first: for duplicates, that is the smallest chunk.
    let (lower, upper) = (lower?, upper?);
    let total = lower + upper;
    let mut list = Vec::with_capacity(total);
    let (a, b) = list.spare_capacity_mut()[..total].split_at_mut(lower);
    let fill_part = |p, out| {
        let mut sink = Sink {
            out,
            written: 0,
            chunk,
        };
        fill(p, &mut sink);
        sink.written
    };
    let written = both(parallel, || fill_part(0, a), || fill_part(1, b));
    assert_eq!(
        written,
        (lower, upper),
        "runs written differ from runs counted"
    );
    // SAFETY: the first `lower` slots were written through `a` and the next `upper` through
    // `b` (a `Sink` writes its slots in order from the first and counts them), checked above.
    unsafe { list.set_len(total) };
    Ok(list)
}

/// The runs of set bits in `words` (bit `i % 64` of word `i / 64` for chunk `i`).
pub fn runs_from_bits(words: &[u64], chunk: u64) -> Result<Vec<Extent>, StoreProblem> {
    let mid = words.len() / 2;
    let parts = [0..mid, mid..words.len()];
    build(
        chunk,
        words.len() >= PARALLEL_MIN / 64,
        |p| Ok(count_bits(words, parts[p].clone())),
        |p, sink| fill_bits(words, parts[p].clone(), sink),
    )
}

/// True when chunk `64 * start - 1` (the bit below word `start`) is set.
fn set_below(words: &[u64], start: usize) -> bool {
    start > 0 && words[start - 1] >> 63 == 1
}

/// Runs that start in words `range`: set bits whose lower neighbour is clear.
fn count_bits(words: &[u64], range: Range<usize>) -> usize {
    let mut carry = u64::from(set_below(words, range.start));
    let mut count = 0;
    for &w in &words[range] {
        count += (w & !((w << 1) | carry)).count_ones() as usize;
        carry = w >> 63;
    }
    count
}

/// Write the runs that start in words `range`; one still open at the range's end is followed
/// into the words above it.
fn fill_bits(words: &[u64], range: Range<usize>, sink: &mut Sink) {
    let mut first = range.start;
    // Bits of word `first` that belong to the run from below.
    let mut skip = 0u64;
    if set_below(words, first) {
        // The run below goes on here: it is the lower part's.
        while first < range.end && words[first] == u64::MAX {
            first += 1;
        }
        if first < range.end {
            skip = !(u64::MAX << words[first].trailing_ones());
        }
    }
    // The start of a run that reaches the top bit of the word before.
    let mut open: Option<u64> = None;
    for (i, &w) in words.iter().enumerate().take(range.end).skip(first) {
        let base = i as u64 * 64;
        let mut rest = if i == first { w & !skip } else { w };
        if let Some(start) = open {
            let ones = rest.trailing_ones();
            if ones == 64 {
                continue;
            }
            sink.push(start, base + u64::from(ones) - start);
            open = None;
            rest &= u64::MAX << ones;
        }
        while rest != 0 {
            let lo = rest.trailing_zeros();
            let len = (rest >> lo).trailing_ones();
            if lo + len == 64 {
                open = Some(base + u64::from(lo));
                break;
            }
            sink.push(base + u64::from(lo), u64::from(len));
            rest &= u64::MAX << (lo + len);
        }
    }
    if let Some(start) = open {
        let mut end = range.end as u64 * 64;
        for &w in &words[range.end..] {
            let ones = w.trailing_ones();
            end += u64::from(ones);
            if ones < 64 {
                break;
            }
        }
        sink.push(start, end - start);
    }
}

/// The runs of the sorted chunks `parts` (every chunk of the first below every chunk of the
/// second); a chunk listed twice is an error naming the smallest such chunk.
pub fn runs_from_sorted(parts: &[Vec<u64>; 2], chunk: u64) -> Result<Vec<Extent>, StoreProblem> {
    let below = |p: usize| {
        if p == 0 {
            None
        } else {
            parts[0].last().copied()
        }
    };
    build(
        chunk,
        parts[0].len() + parts[1].len() >= PARALLEL_MIN,
        |p| count_sorted(&parts[p], below(p)).map_err(StoreProblem::DuplicateOldChunk),
        |p, sink| {
            let above: &[u64] = if p == 0 { &parts[1] } else { &[] };
            fill_sorted(&parts[p], below(p), above, sink);
        },
    )
}

/// Runs that start in the sorted `keys`, the largest chunk below them being `below`; the
/// first chunk listed twice is an error.
fn count_sorted(keys: &[u64], below: Option<u64>) -> Result<usize, u64> {
    let Some((&first, rest)) = keys.split_first() else {
        return Ok(0);
    };
    let mut count = usize::from(below.is_none_or(|b| first != b.wrapping_add(1)));
    let (mut last, mut twice) = (first, below == Some(first));
    for &k in rest {
        twice |= k == last;
        count += usize::from(k != last.wrapping_add(1));
        last = k;
    }
    if twice {
        let mut all = below.into_iter().chain(keys.iter().copied());
        let mut prev = all.next();
        for k in all {
            if prev == Some(k) {
                return Err(k);
            }
            prev = Some(k);
        }
    }
    Ok(count)
}

/// Write the runs that start in the sorted `keys` (after the run coming from `below`, if it
/// goes on here); one still open at the end of `keys` is followed into `above`.
fn fill_sorted(keys: &[u64], below: Option<u64>, above: &[u64], sink: &mut Sink) {
    let mut i = 0;
    if let Some(mut last) = below {
        while i < keys.len() && keys[i] == last.wrapping_add(1) {
            last = keys[i];
            i += 1;
        }
    }
    while i < keys.len() {
        let (start, mut n) = (keys[i], 1u64);
        i += 1;
        while i < keys.len() && keys[i] == start + n {
            n += 1;
            i += 1;
        }
        if i == keys.len() {
            n += above
                .iter()
                .zip(start + n..)
                .take_while(|(&k, want)| k == *want)
                .count() as u64;
        }
        sink.push(start, n);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `(first chunk, chunk count)` of each extent of a run list (one chunk = one unit).
    pub(in crate::cow) fn pairs(list: Vec<Extent>) -> Vec<(u64, u64)> {
        list.iter().map(|e| (e.offset.0, e.length.0)).collect()
    }

    /// The runs of `chunks`, computed the plain way (sort, merge); `Err` with the smallest
    /// duplicate if a chunk repeats.
    pub(in crate::cow) fn reference(chunks: &[u64]) -> Result<Vec<(u64, u64)>, u64> {
        let mut v = chunks.to_vec();
        v.sort_unstable();
        if let Some(w) = v.windows(2).find(|w| w[0] == w[1]) {
            return Err(w[0]);
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for c in v {
            match runs.last_mut() {
                Some((f, n)) if *f + *n == c => *n += 1,
                _ => runs.push((c, 1)),
            }
        }
        Ok(runs)
    }

    /// Long runs crossing the cut between the two parts (also over whole words), both ways.
    #[test]
    fn runs_across_the_cut() {
        let words = PARALLEL_MIN / 64 * 2;
        for (from, to) in [
            (0, 64),
            (10, words as u64 * 64),
            (1000, 30_000),
            (16_448, 16_500),
            (16_447, 16_449),
            (32_767, 32_769),
        ] {
            let chunks: Vec<u64> = (from..to).chain([to + 1, to + 70]).collect();
            let mut bits = vec![0u64; words + 2];
            chunks
                .iter()
                .for_each(|&c| bits[(c / 64) as usize] |= 1 << (c % 64));
            let want = reference(&chunks).unwrap();
            assert_eq!(pairs(runs_from_bits(&bits, 1).unwrap()), want);
            let n = chunks.len();
            for cut in [0, 1, n / 2, n - 1, n] {
                let parts = [chunks[..cut].to_vec(), chunks[cut..].to_vec()];
                assert_eq!(
                    pairs(runs_from_sorted(&parts, 1).unwrap()),
                    want,
                    "cut {cut}"
                );
            }
        }
    }

    proptest! {
        /// Both builders give the reference runs, cut anywhere (the set as drawn, with its
        /// duplicates, and without them); the sorted one finds the smallest duplicate.
        #[test]
        fn like_the_reference(chunks in prop::collection::vec(
            prop_oneof![0u64..300, 0u64..5000, 0u64..70_000], 1..3000), cut in any::<prop::sample::Index>()) {
            let mut unique = chunks.clone();
            unique.sort_unstable();
            unique.dedup();
            for set in [chunks, unique] {
                let want = reference(&set);
                let mut sorted = set.clone();
                sorted.sort_unstable();
                let at = cut.index(sorted.len() + 1);
                // Equal chunks stay in one part, as the radix sort keeps them.
                let at = sorted.partition_point(|&c| at > 0 && c <= sorted[at - 1]);
                let parts = [sorted[..at].to_vec(), sorted[at..].to_vec()];
                let got = runs_from_sorted(&parts, 512).map(pairs).map_err(|p| match p {
                    StoreProblem::DuplicateOldChunk(c) => c,
                    other => panic!("{other:?}"),
                });
                let want_bytes = want.clone().map(|r| r.iter().map(|(s, n)| (s * 512, n * 512)).collect());
                prop_assert_eq!(got, want_bytes);
                if let Ok(want) = want {
                    let mut bits = vec![0u64; 70_000 / 64 + 1];
                    set.iter().for_each(|&c| bits[(c / 64) as usize] |= 1 << (c % 64));
                    prop_assert_eq!(pairs(runs_from_bits(&bits, 1).unwrap()), want);
                }
            }
        }
    }
}
