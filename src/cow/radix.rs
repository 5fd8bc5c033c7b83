//! Radix sort of u64 keys on two threads, for the million-exception case.
//!
//! A store lists its origin chunks in commit order, which for random writes is random order.
//! Sorting them is the largest CPU cost of reading a sparse store; comparison sorts need
//! ~n log n steps, while a radix sort takes a few passes over only the bits that vary between
//! keys (origin chunk numbers rarely use more than 20–30 of their 64 bits).
//!
//! Shape: one pass counts the keys per top digit (each thread half the keys); the top-digit
//! buckets are split into a lower and an upper part of about the same size; each thread then
//! gathers its part's keys from the list into a buffer of its own, bucket by bucket, and sorts
//! each bucket (a few thousand keys, in the cache) by the remaining bits. The result stays in
//! two parts, every key of the first below every key of the second, which is what the run
//! builder wants anyway (one part per thread) and saves joining them into one list.

use super::parallel::both;

/// Bits of the top digit: 1,024 buckets of about a thousand keys each for a million keys.
const TOP_BITS: u32 = 10;

/// The widest digit a pass inside a bucket sorts by: 2^12 counts (32 KiB) stay in the cache.
const MAX_DIGIT_BITS: u32 = 12;

/// Below this many keys a comparison sort on the calling thread is cheaper than threads.
const SMALL: usize = 1 << 12;

/// Sort `keys` ascending, returned as a lower and an upper part (every key of the first is
/// below every key of the second; equal keys land in one part). `varying` has a bit set
/// wherever two keys differ (the OR of all keys XOR their AND; a superset is fine): only the
/// range from its lowest to its highest bit is sorted by. Memory: the parts together are as
/// large as `keys`, which is freed once both are filled.
pub fn sort_u64(mut keys: Vec<u64>, varying: u64) -> [Vec<u64>; 2] {
    if keys.len() < SMALL || varying == 0 {
        keys.sort_unstable();
        return [keys, Vec::new()];
    }
    let (lo, hi) = (varying.trailing_zeros(), 64 - varying.leading_zeros());
    let top = (hi - lo).min(TOP_BITS);
    let shift = hi - top;
    let buckets = 1usize << top;
    let digit = move |k: u64| ((k >> shift) as usize) & (buckets - 1);
    let count = |part: &[u64]| {
        let mut n = vec![0usize; buckets];
        part.iter().for_each(|&k| n[digit(k)] += 1);
        n
    };
    let (a, b) = keys.split_at(keys.len() / 2);
    let (ca, cb) = both(true, || count(a), || count(b));
    // starts[d]: where bucket d begins in the sorted order.
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut sum = 0;
    for d in 0..buckets {
        starts.push(sum);
        sum += ca[d] + cb[d];
    }
    starts.push(sum);
    let split = starts.partition_point(|&s| s < keys.len() / 2).min(buckets);
    // Both buffers come from this thread's allocator: memory a spawned thread allocates comes
    // from an arena of its own, freshly mapped (and page-faulted) on every parse.
    let mut parts = [
        vec![0u64; starts[split] + 1],
        vec![0u64; keys.len() - starts[split] + 1],
    ];
    let [lower, upper] = &mut parts;
    let gather = |range: std::ops::Range<usize>, out: &mut Vec<u64>| {
        gather_part(&keys, digit, &starts, range, lo, shift, out)
    };
    both(
        true,
        || gather(0..split, lower),
        || gather(split..buckets, upper),
    );
    drop(keys);
    parts
}

/// The keys of `keys` whose top digit is in `range`, sorted into `out` (zeroed, one longer than
/// those keys): gathered bucket by bucket (bucket `d` begins at `starts[d]` in the whole sorted
/// order), then each bucket sorted by bits `lo..hi`.
fn gather_part(
    keys: &[u64],
    digit: impl Fn(u64) -> usize,
    starts: &[usize],
    range: std::ops::Range<usize>,
    lo: u32,
    hi: u32,
    out: &mut Vec<u64>,
) {
    let base = starts[range.start];
    let len = starts[range.end] - base;
    // One slot past the part takes the keys of the other part: the scatter has no branch.
    let mut next: Vec<usize> = (0..starts.len() - 1)
        .map(|d| {
            if range.contains(&d) {
                starts[d] - base
            } else {
                len
            }
        })
        .collect();
    let step: Vec<usize> = (0..next.len())
        .map(|d| usize::from(range.contains(&d)))
        .collect();
    for &k in keys {
        let d = digit(k);
        let at = next[d];
        out[at] = k;
        next[d] = at + step[d];
    }
    out.truncate(len);
    let mut scratch = Vec::new();
    for d in range {
        let bucket = &mut out[starts[d] - base..starts[d + 1] - base];
        sort_bits(bucket, lo, hi, &mut scratch);
    }
}

/// Sort `keys` (which agree on every bit outside `lo..hi`) by LSD passes over bits `lo..hi`,
/// with `scratch` as the other buffer.
fn sort_bits(keys: &mut [u64], lo: u32, hi: u32, scratch: &mut Vec<u64>) {
    if keys.len() < 64 || hi <= lo {
        keys.sort_unstable();
        return;
    }
    let passes = (hi - lo).div_ceil(MAX_DIGIT_BITS);
    let width = (hi - lo).div_ceil(passes);
    let (mask, buckets) = ((1u64 << width) - 1, 1usize << width);
    // Every pass's bucket counts in one read of the keys.
    let mut next = vec![0usize; buckets * passes as usize];
    for &k in keys.iter() {
        for (pass, counts) in next.chunks_exact_mut(buckets).enumerate() {
            counts[((k >> (lo + pass as u32 * width)) & mask) as usize] += 1;
        }
    }
    if scratch.len() < keys.len() {
        scratch.resize(keys.len(), 0);
    }
    let other = &mut scratch[..keys.len()];
    for (pass, next) in next.chunks_exact_mut(buckets).enumerate() {
        let shift = lo + pass as u32 * width;
        let mut sum = 0;
        for n in next.iter_mut() {
            let count = *n;
            *n = sum;
            sum += count;
        }
        let (from, to): (&[u64], &mut [u64]) = if pass % 2 == 0 {
            (keys, other)
        } else {
            (other, keys)
        };
        for &k in from {
            let d = ((k >> shift) & mask) as usize;
            to[next[d]] = k;
            next[d] += 1;
        }
    }
    if passes % 2 == 1 {
        keys.copy_from_slice(other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varying(keys: &[u64]) -> u64 {
        keys.iter().fold(0, |a, &k| a | k) ^ keys.iter().fold(u64::MAX, |a, &k| a & k)
    }

    /// Sorted like the standard library, and split with every key of the first part below
    /// every key of the second.
    fn check(keys: Vec<u64>) {
        let mut expect = keys.clone();
        expect.sort_unstable();
        let bits = varying(&keys);
        let [a, b] = sort_u64(keys, bits);
        if let (Some(x), Some(y)) = (a.last(), b.first()) {
            assert!(x < y, "parts overlap: {x} >= {y}");
        }
        assert_eq!([a, b].concat(), expect);
    }

    #[test]
    fn edge_ranges() {
        check(vec![7u64; 5000]);
        check(
            (0..5000u64)
                .map(|i| (i % 2) << 63 | (4999 - i) << 40)
                .collect(),
        );
        // All keys in one top bucket, and keys differing only in their top bits.
        check((0..9000u64).map(|i| (i * 7919) % 9000).collect());
        check((0..5000u64).map(|i| (i % 256) << 56).collect());
        check((0..5000u64).map(|i| u64::MAX - (i * 31) % 5000).collect());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sorts_like_the_standard_library(v in prop::collection::vec(
            prop_oneof![any::<u64>(), 0u64..70_000, Just(u64::MAX), Just(0)], 0..20_000)) {
            check(v);
        }
    }
}
