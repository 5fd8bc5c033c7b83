//! LSD radix sort of u64 keys, for the million-exception case.
//!
//! A store lists its origin chunks in commit order, which for random writes is random order.
//! Sorting them is the largest CPU cost of reading a store; comparison sorts need ~n log n
//! steps, while a radix sort takes two passes per digit over only the bits that vary between
//! keys (origin chunk numbers rarely use more than 20–30 of their 64 bits: two or three
//! 11-bit digits).

/// The widest digit a pass sorts by: 2^11 buckets of counts stay in the L1 cache.
const MAX_DIGIT_BITS: u32 = 11;

/// Sort `keys` ascending (stable, one scratch buffer of the same length). `varying` has a bit
/// set wherever two keys differ (the OR of all keys XOR their AND; a superset is fine): only
/// the range from its lowest to its highest bit is sorted by.
pub fn sort_u64(keys: &mut Vec<u64>, varying: u64) {
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    if varying == 0 {
        return;
    }
    let (lo, hi) = (varying.trailing_zeros(), 64 - varying.leading_zeros());
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
    let mut scratch = vec![0u64; keys.len()];
    for (pass, next) in next.chunks_exact_mut(buckets).enumerate() {
        let shift = lo + pass as u32 * width;
        let mut sum = 0;
        for n in next.iter_mut() {
            let count = *n;
            *n = sum;
            sum += count;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) & mask) as usize;
            scratch[next[d]] = k;
            next[d] += 1;
        }
        std::mem::swap(keys, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varying(keys: &[u64]) -> u64 {
        keys.iter().fold(0, |a, &k| a | k) ^ keys.iter().fold(u64::MAX, |a, &k| a & k)
    }

    #[test]
    fn edge_ranges() {
        let mut same = vec![7u64; 300];
        sort_u64(&mut same, 0);
        assert_eq!(same, vec![7u64; 300]);
        let mut top: Vec<u64> = (0..300u64)
            .map(|i| (i % 2) << 63 | (299 - i) << 40)
            .collect();
        let mut expect = top.clone();
        expect.sort_unstable();
        let bits = varying(&top);
        sort_u64(&mut top, bits);
        assert_eq!(top, expect);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sorts_like_the_standard_library(mut v in prop::collection::vec(
            prop_oneof![any::<u64>(), 0u64..70_000, Just(u64::MAX)], 0..2000)) {
            let mut expect = v.clone();
            expect.sort_unstable();
            let bits = varying(&v);
            sort_u64(&mut v, bits);
            prop_assert_eq!(v, expect);
        }
    }
}
