//! `lvmsync diff --thin-metadata` against the real `thin_delta` (and `thin_dump` for
//! "everything mapped"), extent for extent, on metadata built by the real `thin_restore` from
//! random mapping pairs: runs, singles, holes, many devices per metadata file, data blocks
//! shared between virtual blocks, remaps to the same data block, metadata versions 1 and 2.
//!
//! `thin_delta` costs ~50 ms a call, so each device pair packs up to 19 independent random
//! pairs side by side in its virtual address space (each in its own 2^28-block slot): one
//! `thin_delta` call checks them all, and the trees get the depth real pools have.

mod thin_support;

use proptest::prelude::*;
use std::collections::BTreeMap;
use thin_support::{lvmsync_diff, meta_bytes_for, restore, thin_delta, thin_dump_mapped, Device};

/// A stretch of the older device.
#[derive(Debug, Clone)]
enum Seg {
    Hole(u64),
    Run(u64),
    Single,
}

/// A change applied to a range of the newer device.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Mapped blocks get new data blocks (changed).
    Remap,
    /// Mapped blocks are unmapped (removed).
    Unmap,
    /// Every block gets a new data block (added or changed).
    Map,
    /// Mapped blocks keep their data block with a newer time (same).
    Retime,
    /// Every block maps to a data block another virtual block already uses (shared data).
    ShareData,
}

#[derive(Debug, Clone)]
struct PairSpec {
    base: u64,
    old: Vec<Seg>,
    ops: Vec<(u64, u64, Op)>,
}

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        (1..300u64).prop_map(Seg::Hole),
        (1..250u64).prop_map(Seg::Run),
        Just(Seg::Single),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Remap),
        Just(Op::Unmap),
        Just(Op::Map),
        Just(Op::Retime),
        Just(Op::ShareData),
    ]
}

fn pair() -> impl Strategy<Value = PairSpec> {
    (
        prop_oneof![Just(0u64), 0..100_000u64],
        prop::collection::vec(seg(), 0..24),
        prop::collection::vec((0..7_000u64, 1..300u64, op()), 0..12),
    )
        .prop_map(|(base, old, ops)| PairSpec { base, old, ops })
}

type Maps = Vec<(u64, u64, u32)>;

/// Turn a spec into (older, newer) mappings, drawing fresh data blocks from `next_data`.
fn build(spec: &PairSpec, next_data: &mut u64) -> (Maps, Maps) {
    let mut old = BTreeMap::new();
    let mut pos = spec.base;
    for s in &spec.old {
        match s {
            Seg::Hole(n) => pos += n,
            Seg::Run(n) => {
                for i in 0..*n {
                    old.insert(pos + i, (*next_data + i, 0u32));
                }
                pos += n;
                *next_data += n + 1;
            }
            Seg::Single => {
                old.insert(pos, (*next_data, 0));
                pos += 1;
                *next_data += 2;
            }
        }
    }
    let shared = old.values().next().map(|v| v.0).unwrap_or(0);
    let mut new = old.clone();
    for &(off, len, op) in &spec.ops {
        let range = spec.base + off..spec.base + off + len;
        match op {
            Op::Unmap => new.retain(|v, _| !range.contains(v)),
            Op::Remap | Op::Retime => {
                for (_, m) in new.range_mut(range) {
                    if matches!(op, Op::Remap) {
                        *m = (*next_data, 1);
                        *next_data += 1;
                    } else {
                        m.1 = 1;
                    }
                }
            }
            Op::Map | Op::ShareData => {
                for v in range {
                    let d = if matches!(op, Op::Map) {
                        *next_data += 1;
                        *next_data
                    } else {
                        shared
                    };
                    new.insert(v, (d, 1));
                }
            }
        }
    }
    let flat = |m: BTreeMap<u64, (u64, u32)>| m.into_iter().map(|(v, (d, t))| (v, d, t)).collect();
    (flat(old), flat(new))
}

/// Virtual blocks reserved for one packed pair.
const SLOT: u64 = 1 << 28;

/// Pack `subs` into one (older, newer) device pair, slot by slot, shifted by `shift` blocks.
fn packed(subs: &[PairSpec], shift: u64, next_data: &mut u64) -> (Maps, Maps) {
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for (k, spec) in subs.iter().enumerate() {
        let (o, n) = build(spec, next_data);
        let at = shift + k as u64 * SLOT;
        old.extend(o.into_iter().map(|(v, d, t)| (v + at, d, t)));
        new.extend(n.into_iter().map(|(v, d, t)| (v + at, d, t)));
    }
    (old, new)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// 24 metadata files × 8 device pairs × 0..20 packed pairs (~1,900 random pairs), each
    /// device pair compared both ways with thin_delta and "everything mapped" with thin_dump.
    #[test]
    fn diff_matches_thin_delta(
        groups in prop::collection::vec(prop::collection::vec(pair(), 0..20), 8),
        v2 in any::<bool>(),
        id_base in prop_oneof![Just(0u64), 1..1000u64, Just(1u64 << 23)],
        shift in prop_oneof![Just(0u64), Just(1u64 << 40)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("pool.meta");
        let mut next_data = 0;
        let mut devices = Vec::new();
        for (k, subs) in groups.iter().enumerate() {
            let (old, new) = packed(subs, shift, &mut next_data);
            let id = id_base + 2 * k as u64;
            devices.push(Device { id, maps: old });
            devices.push(Device { id: id + 1, maps: new });
        }
        let version = if v2 { 2 } else { 1 };
        restore(dir.path(), &meta, &devices, version, meta_bytes_for(&devices));
        for k in 0..groups.len() {
            let (a, b) = (id_base + 2 * k as u64, id_base + 2 * k as u64 + 1);
            prop_assert_eq!(lvmsync_diff(&meta, Some(a), b), thin_delta(&meta, a, b), "{} -> {}", a, b);
            prop_assert_eq!(lvmsync_diff(&meta, Some(b), a), thin_delta(&meta, b, a), "{} -> {}", b, a);
            if k % 4 == 0 {
                prop_assert_eq!(lvmsync_diff(&meta, None, b), thin_dump_mapped(&meta, b), "all of {}", b);
            }
        }
    }
}

/// A pair deep enough for three-level trees (~200,000 mappings each), 1% changed in scattered
/// runs, plus unrelated devices in the same file compared across each other.
#[test]
fn deep_trees_and_unrelated_devices_match_thin_delta() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("pool.meta");
    let spec = PairSpec {
        base: 7,
        old: (0..400)
            .flat_map(|i| [Seg::Run(500 + i % 7), Seg::Hole(1 + i % 5), Seg::Single])
            .collect(),
        ops: (0..40u64)
            .map(|i| {
                (
                    i * 5003,
                    40 + i,
                    [Op::Remap, Op::Unmap, Op::Map, Op::Retime][i as usize % 4],
                )
            })
            .collect(),
    };
    let mut next_data = 0;
    let (old, new) = build(&spec, &mut next_data);
    assert!(old.len() > 200_000, "{} mappings", old.len());
    let other = build(
        &PairSpec {
            base: 0,
            old: vec![Seg::Run(3000)],
            ops: vec![],
        },
        &mut next_data,
    )
    .0;
    let devices = [
        Device { id: 1, maps: old },
        Device { id: 2, maps: new },
        Device { id: 9, maps: other },
    ];
    restore(dir.path(), &meta, &devices, 2, meta_bytes_for(&devices));
    for (a, b) in [(1, 2), (2, 1), (1, 9), (9, 2)] {
        assert_eq!(
            lvmsync_diff(&meta, Some(a), b),
            thin_delta(&meta, a, b),
            "{a} -> {b}"
        );
    }
    assert_eq!(lvmsync_diff(&meta, None, 2), thin_dump_mapped(&meta, 2));

    // The live path reads `_tmeta` with O_DIRECT and reads ahead on threads: same answers.
    // (O_DIRECT needs a disk file system, so the copy lives under the target dir, not /tmp.)
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let direct_meta = disk.path().join("pool.meta");
    std::fs::copy(&meta, &direct_meta).unwrap();
    let direct = lvmsync::thin::FileSource::open_direct(&direct_meta).unwrap();
    let sb = lvmsync::thin::Superblock::read(&direct, 0).unwrap();
    for (a, b) in [(1, 2), (9, 2)] {
        let (cs, stats) = lvmsync::thin::diff::diff_devices(&direct, &sb, Some(a), b).unwrap();
        assert_eq!(cs, thin_delta(&meta, a, b), "O_DIRECT {a} -> {b}");
        assert!(stats.nodes_read > 1000, "{a} -> {b}: {stats:?}");
    }
}
