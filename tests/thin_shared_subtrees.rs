//! The diff's shared-subtree skip, on synthetic metadata laid out the way the kernel shares
//! trees between a snapshot and its origin (`thin_restore` never shares nodes, so it can't
//! show this). A test-side writer, built from the format facts independently of the reader,
//! writes an "old" device, a "new" device that reuses every old node whose subtree did not
//! change (copy-on-write of the touched paths only, as the kernel does), and the same new
//! mappings again with no sharing. Both diffs must equal the diff computed directly from the
//! mapping lists, and the shared walk must read exactly the copied nodes (twice: old and new),
//! so its work grows with the changes, not with the mapped size.

mod thin_support;

use lvmsync::thin::checksum::{seal, BTREE_CSUM_XOR, SUPERBLOCK_CSUM_XOR};
use lvmsync::thin::diff::{diff_devices, mapped_in};
use lvmsync::thin::{MemorySource, Superblock};
use lvmsync::{ChangeSet, Extent};
use proptest::prelude::*;
use std::collections::BTreeMap;
use thin_support::{reference_diff, DATA_BLOCK_BYTES, DATA_BLOCK_SECTORS};

type Block = [u8; 4096];

/// A metadata image being written, block 0 reserved for the superblock.
struct Image {
    blocks: Vec<Block>,
}

impl Image {
    fn new() -> Self {
        Image {
            blocks: vec![[0; 4096]],
        }
    }

    /// Write one node; `values` are raw `value_size`-byte values.
    fn node(&mut self, leaf: bool, keys: &[u64], values: &[Vec<u8>], value_size: usize) -> u64 {
        let n = self.blocks.len() as u64;
        let max = (4096 - 32) / (8 + value_size) / 3 * 3;
        let mut b = [0u8; 4096];
        b[4..8].copy_from_slice(&(if leaf { 2u32 } else { 1 }).to_le_bytes());
        b[8..16].copy_from_slice(&n.to_le_bytes());
        b[16..20].copy_from_slice(&(keys.len() as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(max as u32).to_le_bytes());
        b[24..28].copy_from_slice(&(value_size as u32).to_le_bytes());
        for (i, (k, v)) in keys.iter().zip(values).enumerate() {
            b[32 + 8 * i..40 + 8 * i].copy_from_slice(&k.to_le_bytes());
            let off = 32 + 8 * max + value_size * i;
            b[off..off + value_size].copy_from_slice(v);
        }
        seal(&mut b, BTREE_CSUM_XOR);
        self.blocks.push(b);
        n
    }

    /// Write a node with `u64` values (mapping trees, internal nodes).
    fn u64_node(&mut self, leaf: bool, entries: &[(u64, u64)]) -> u64 {
        let keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
        let vals: Vec<Vec<u8>> = entries.iter().map(|e| e.1.to_le_bytes().to_vec()).collect();
        self.node(leaf, &keys, &vals, 8)
    }

    /// Write the superblock and return the finished image.
    fn superblock(&mut self, mapping_root: u64, details_root: u64) -> MemorySource {
        let nr = self.blocks.len() as u64;
        let b = &mut self.blocks[0];
        b[32..40].copy_from_slice(&27_022_010u64.to_le_bytes());
        b[40..44].copy_from_slice(&2u32.to_le_bytes());
        b[320..328].copy_from_slice(&mapping_root.to_le_bytes());
        b[328..336].copy_from_slice(&details_root.to_le_bytes());
        b[336..340].copy_from_slice(&(DATA_BLOCK_SECTORS as u32).to_le_bytes());
        b[340..344].copy_from_slice(&8u32.to_le_bytes());
        b[344..352].copy_from_slice(&nr.to_le_bytes());
        seal(b, SUPERBLOCK_CSUM_XOR);
        MemorySource::new("synthetic.meta", self.blocks.concat())
    }
}

/// A written tree, level by level from the leaves up: `(lowest key, block)` per node.
type Levels = Vec<Vec<(u64, u64)>>;

/// Write the tree of `maps` with leaves starting at `leaf_los` and `fanout` children per
/// internal node. A node whose content equals the node at the same place in `old` reuses its
/// block, as the kernel's copy-on-write leaves untouched subtrees shared. Returns the tree
/// and the number of nodes written.
fn write_tree(
    img: &mut Image,
    leaf_los: &[u64],
    fanout: usize,
    maps: &BTreeMap<u64, u64>,
    old: Option<(&Levels, &BTreeMap<u64, u64>)>,
) -> (Levels, u64) {
    let mut written = 0;
    let mut levels: Levels = vec![Vec::new()];
    for (i, &lo) in leaf_los.iter().enumerate() {
        let hi = leaf_los.get(i + 1).copied().unwrap_or(u64::MAX);
        let entries = |m: &BTreeMap<u64, u64>| -> Vec<(u64, u64)> {
            m.range(lo..hi).map(|(k, v)| (*k, *v)).collect()
        };
        let mine = entries(maps);
        let block = match old {
            Some((ol, om)) if entries(om) == mine => ol[0][i].1,
            _ => {
                written += 1;
                img.u64_node(true, &mine)
            }
        };
        levels[0].push((lo, block));
    }
    let mut d = 0;
    while levels[d].len() > 1 {
        let mut next = Vec::new();
        for (g, group) in levels[d].chunks(fanout).enumerate() {
            let old_group = old.map(|(ol, _)| &ol[d][g * fanout..g * fanout + group.len()]);
            let block = match old_group {
                Some(og) if og == group => old.map(|(ol, _)| ol[d + 1][g].1).unwrap_or(0),
                _ => {
                    written += 1;
                    img.u64_node(false, group)
                }
            };
            next.push((group[0].0, block));
        }
        levels.push(next);
        d += 1;
    }
    (levels, written)
}

fn root(levels: &Levels) -> u64 {
    levels.last().unwrap()[0].1
}

fn nodes(levels: &Levels) -> u64 {
    levels.iter().map(|l| l.len() as u64).sum()
}

fn as_list(m: &BTreeMap<u64, u64>) -> Vec<(u64, u64, u32)> {
    m.iter().map(|(k, v)| (*k, *v >> 24, 0)).collect()
}

/// Old mappings, the new ones after `changes`, and the leaf partition of the old ones.
fn scenario(
    runs: &[(u64, u64)],
    changes: &[(u64, u8)],
    leaf_size: usize,
) -> (BTreeMap<u64, u64>, BTreeMap<u64, u64>, Vec<u64>) {
    let (mut old, mut key, mut data) = (BTreeMap::new(), 0u64, 1u64);
    for &(gap, len) in runs {
        key += gap;
        for _ in 0..len {
            old.insert(key, data << 24);
            key += 1;
            data += 1;
        }
    }
    let mut new = old.clone();
    for &(k, kind) in changes {
        match kind % 3 {
            0 => {
                new.remove(&k);
            }
            1 => {
                data += 1;
                new.insert(k, data << 24);
            }
            // Same data block, newer time: not a change.
            _ => {
                if let Some(v) = new.get_mut(&k) {
                    *v |= 1;
                }
            }
        }
    }
    let mut los = vec![0];
    los.extend(
        old.keys()
            .enumerate()
            .filter(|(i, _)| *i > 0 && i % leaf_size == 0)
            .map(|(_, k)| *k),
    );
    (old, new, los)
}

/// Write old (dev 1), new sharing old's unchanged subtrees (dev 2) and new without sharing
/// (dev 3); returns the source and the number of nodes dev 2 has of its own, and the total
/// node counts of devs 1 and 3.
fn image(
    old: &BTreeMap<u64, u64>,
    new: &BTreeMap<u64, u64>,
    los: &[u64],
    fanout: usize,
) -> (MemorySource, u64, u64) {
    let mut img = Image::new();
    let (t1, _) = write_tree(&mut img, los, fanout, old, None);
    let (t2, own2) = write_tree(&mut img, los, fanout, new, Some((&t1, old)));
    let (t3, _) = write_tree(&mut img, los, fanout, new, None);
    let top = img.u64_node(true, &[(1, root(&t1)), (2, root(&t2)), (3, root(&t3))]);
    let details: Vec<Vec<u8>> = (0..3).map(|_| vec![0u8; 24]).collect();
    let det = img.node(true, &[1, 2, 3], &details, 24);
    (img.superblock(top, det), own2, nodes(&t1) + nodes(&t3))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn shared_walk_reads_only_copied_nodes(
        runs in prop::collection::vec((0..40u64, 1..150u64), 1..30),
        changes in prop::collection::vec((0..4000u64, any::<u8>()), 0..12),
        leaf_size in 8..120usize,
        fanout in 2..8usize,
        range in (0..7000 * DATA_BLOCK_BYTES, 0..3000 * DATA_BLOCK_BYTES),
    ) {
        let (old, new, los) = scenario(&runs, &changes, leaf_size);
        let (src, own2, unshared_nodes) = image(&old, &new, &los, fanout);
        let sb = Superblock::read(&src, 0).unwrap();
        let truth = reference_diff(Some(&as_list(&old)), &as_list(&new));
        let (shared, s_stats) = diff_devices(&src, &sb, Some(1), 2).unwrap();
        let (unshared, u_stats) = diff_devices(&src, &sb, Some(1), 3).unwrap();
        prop_assert_eq!(&shared, &truth);
        prop_assert_eq!(&unshared, &truth);
        // Every node dev 2 has of its own is read, with its old counterpart; nothing else.
        prop_assert_eq!(s_stats.nodes_read, 2 * own2);
        prop_assert_eq!(u_stats.nodes_read, unshared_nodes);
        let everything = reference_diff(None, &as_list(&new));
        prop_assert_eq!(&diff_devices(&src, &sb, None, 2).unwrap().0, &everything);
        let (from, to) = (range.0, range.0 + range.1);
        prop_assert_eq!(mapped_in(&src, &sb, 2, from..to).unwrap(), cut(&everything, from, to));
    }
}

/// `set` cut to the bytes `from..to`.
fn cut(set: &ChangeSet, from: u64, to: u64) -> ChangeSet {
    let inside = set.extents().iter().filter_map(|e| {
        let (a, b) = (e.offset.0.max(from), (e.offset.0 + e.length.0).min(to));
        (a < b).then(|| Extent::new(a, b - a, e.kind))
    });
    ChangeSet::from_extents(set.block_size(), inside).unwrap()
}

/// The mapped bytes of a byte range, for ranges starting at every block (and half-way into
/// it) of a deep tree of 8-entry leaves and 2-way nodes, with gaps: the walk that skips the subtrees
/// before the range loses nothing at their edges.
#[test]
fn mapped_in_a_range_starting_anywhere() {
    let runs: Vec<(u64, u64)> = (0..12).map(|i| (i % 3, 5 + i)).collect();
    let (old, _, los) = scenario(&runs, &[], 8);
    let (src, _, _) = image(&old, &old, &los, 2);
    let sb = Superblock::read(&src, 0).unwrap();
    let everything = reference_diff(None, &as_list(&old));
    let end = old.keys().last().unwrap() + 2;
    for start in (0..2 * end).map(|h| h * DATA_BLOCK_BYTES / 2) {
        for len in [
            1,
            DATA_BLOCK_BYTES,
            3 * DATA_BLOCK_BYTES + 7,
            40 * DATA_BLOCK_BYTES,
        ] {
            let want = cut(&everything, start, start + len);
            let got = mapped_in(&src, &sb, 1, start..start + len).unwrap();
            assert_eq!(got, want, "{start}+{len}");
        }
    }
}

/// 200,000 mappings with 10 scattered changes: the shared walk reads a few dozen nodes where
/// the unshared one reads thousands.
#[test]
fn work_grows_with_changes_not_mapped_size() {
    let runs: Vec<(u64, u64)> = (0..2000).map(|i| (i % 3, 100)).collect();
    let changes: Vec<(u64, u8)> = (0..10).map(|i| (i * 20_011, 1)).collect();
    let (old, new, los) = scenario(&runs, &changes, 200);
    let (src, own2, unshared_nodes) = image(&old, &new, &los, 200);
    let sb = Superblock::read(&src, 0).unwrap();
    let (cs, stats) = diff_devices(&src, &sb, Some(1), 2).unwrap();
    assert_eq!(cs, reference_diff(Some(&as_list(&old)), &as_list(&new)));
    assert_eq!(stats.nodes_read, 2 * own2);
    // Each change copies at most one node per level (3 levels here), in both trees.
    assert!(
        stats.nodes_read <= 2 * 10 * 3,
        "read {} nodes",
        stats.nodes_read
    );
    assert!(unshared_nodes > 2000, "{unshared_nodes}");
    assert!(stats.shared_subtrees_skipped > 0);
}
