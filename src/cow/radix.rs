//! LSD radix sort of u64 keys, for the million-exception case.
//!
//! A store lists its origin chunks in commit order, which for random writes is random order.
//! Sorting them is the largest CPU cost of reading a store; comparison sorts need ~n log n
//! steps, while a byte-wise radix sort takes one counting pass plus one pass per byte that
//! actually varies (origin chunk numbers rarely use more than 3 or 4 of their 8 bytes).

/// Sort `keys` ascending (stable, one scratch buffer of the same length).
pub fn sort_u64(keys: &mut Vec<u64>) {
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    // Bytes where all keys agree leave the order unchanged: only the others get a pass.
    let (any, all) = keys
        .iter()
        .fold((0u64, u64::MAX), |(any, all), &k| (any | k, all & k));
    let varying = any ^ all;
    let mut scratch = vec![0u64; keys.len()];
    for shift in (0..64).step_by(8).filter(|s| (varying >> s) & 0xff != 0) {
        let mut next = [0usize; 256];
        for &k in keys.iter() {
            next[((k >> shift) & 0xff) as usize] += 1;
        }
        let mut sum = 0;
        for n in next.iter_mut() {
            let count = *n;
            *n = sum;
            sum += count;
        }
        for &k in keys.iter() {
            let b = ((k >> shift) & 0xff) as usize;
            scratch[next[b]] = k;
            next[b] += 1;
        }
        std::mem::swap(keys, &mut scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_the_standard_library(mut v in prop::collection::vec(
            prop_oneof![any::<u64>(), 0u64..70_000, Just(u64::MAX)], 0..2000)) {
            let mut expect = v.clone();
            expect.sort_unstable();
            sort_u64(&mut v);
            prop_assert_eq!(v, expect);
        }
    }
}
