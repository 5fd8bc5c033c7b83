//! Property tests over the exception-store parser: random well-formed stores parse to their
//! ground truth; bit flips, truncation, garbage and arbitrary records never panic, and whatever
//! the parser accepts is a well-formed change set.

mod cow_support;

use cow_support::{render, StoreSpec};
use lvmsync::cow::changes_from_bytes;
use lvmsync::ChangeSet;
use proptest::prelude::*;

fn spec_strategy() -> impl Strategy<Value = StoreSpec> {
    (
        prop::sample::select(vec![1u32, 2, 8]),
        prop::collection::btree_set(0u64..5000, 0..300),
        any::<u64>(),
        0u64..4,
    )
        .prop_map(|(chunk, set, seed, free)| {
            let mut v: Vec<u64> = set.into_iter().collect();
            // Commit order is not sorted order: rotate by a seed-chosen amount and reverse halves.
            if !v.is_empty() {
                let k = (seed % v.len() as u64) as usize;
                v.rotate_left(k);
                let half = v.len() / 2;
                v[..half].reverse();
            }
            let mut s = StoreSpec::new(chunk, v);
            s.free_chunks = free;
            s
        })
}

/// What every accepted store must satisfy, whatever the input bytes were.
fn well_formed(cs: &ChangeSet) {
    let bs = cs.block_size().0;
    assert!(bs.is_power_of_two() && bs >= 512);
    let mut prev_end = 0u64;
    for (i, e) in cs.extents().iter().enumerate() {
        assert!(e.length.0 > 0 && e.offset.0 % bs == 0 && e.length.0 % bs == 0);
        let end = e.end().expect("extent fits in 64 bits");
        assert!(i == 0 || e.offset.0 > prev_end, "not merged or overlapping");
        prev_end = end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn well_formed_stores_parse_to_ground_truth(spec in spec_strategy()) {
        let cs = changes_from_bytes(&spec.to_bytes(), "mem").unwrap();
        let got: Vec<(u64, u64)> = cs.extents().iter().map(|e| (e.offset.0, e.length.0)).collect();
        prop_assert_eq!(got, spec.expected_runs());
    }

    #[test]
    fn mutated_stores_never_panic(
        spec in spec_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..16),
        cut in prop::option::of(any::<prop::sample::Index>()),
        garbage in prop::option::of((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..64))),
    ) {
        let mut bytes = spec.to_bytes();
        for (at, bit) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        if let Some((at, junk)) = garbage {
            let i = at.index(bytes.len());
            let n = junk.len().min(bytes.len() - i);
            bytes[i..i + n].copy_from_slice(&junk[..n]);
        }
        if let Some(at) = cut {
            bytes.truncate(at.index(bytes.len() + 1));
        }
        match changes_from_bytes(&bytes, "fuzzed-cow") {
            Ok(cs) => well_formed(&cs),
            Err(e) => prop_assert!(e.to_string().contains("fuzzed-cow"), "{}", e),
        }
    }

    #[test]
    fn arbitrary_records_never_panic(
        chunk in prop::sample::select(vec![1u32, 8]),
        recs in prop::collection::vec((any::<u64>(), prop_oneof![0u64..200, any::<u64>()]), 0..100),
        extra in 0u64..50,
        header in prop::option::of(prop::collection::vec(any::<u8>(), 16)),
    ) {
        let mut spec = StoreSpec::new(chunk, vec![]);
        spec.free_chunks = extra;
        let (mut writes, len) = spec.layout_with(&recs);
        if let Some(h) = header {
            writes[0].1[..16].copy_from_slice(&h);
        }
        let len = len.min(300 * u64::from(chunk) * 512);
        match changes_from_bytes(&render(&writes, len), "fuzzed-cow") {
            Ok(cs) => well_formed(&cs),
            Err(e) => prop_assert!(e.to_string().contains("fuzzed-cow"), "{}", e),
        }
    }
}
