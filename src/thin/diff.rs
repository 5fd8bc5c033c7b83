//! Diff of two thin devices by walking both mapping trees together.
//!
//! When the kernel snapshots a thin device it copies nothing: the snapshot's mapping tree *is*
//! the origin's, and later writes copy only the path they touch. So any subtree whose root
//! block number is the same in both trees is identical and holds no difference; the walk skips
//! it without reading it, and the work grows with the changed mappings, not the mapped ones.
//!
//! Semantics are those of `thin_delta --snap1 OLD --snap2 NEW`: a virtual block mapped in both
//! to different data blocks is `changed`, mapped only in the newer device `added`, only in the
//! older one `removed`, and mapped to the same data block in both is left out (the mapping
//! time does not matter: same data block, same data).

use super::cursor::{Front, TreeCursor};
use super::mapping::{self, BlockTime};
use super::source::MetadataSource;
use super::superblock::Superblock;
use crate::changeset::{ChangeSet, ChangeSetBuilder, Extent, ExtentKind};
use crate::error::{Error, Result};
use crate::units::Bytes;
use std::ops::{Range, RangeInclusive};

/// How much work a diff did: the measure that must grow with changes, not with mapped size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Btree nodes read (both trees together).
    pub nodes_read: u64,
    /// Subtrees skipped because both trees share them.
    pub shared_subtrees_skipped: u64,
}

/// Diff thin devices `old` and `new` of the metadata described by `sb`. With `old = None`,
/// everything mapped in `new` is `added` (an initial full sync; holes need no transfer).
pub fn diff_devices(
    src: &dyn MetadataSource,
    sb: &Superblock,
    old: Option<u64>,
    new: u64,
) -> Result<(ChangeSet, DiffStats)> {
    let new_tree = mapping::device_tree(src, sb, new)?;
    let old_tree = old.map(|o| mapping::device_tree(src, sb, o)).transpose()?;
    diff_trees(src.name(), old_tree, new_tree, sb.data_block_bytes())
}

/// The bytes in `bytes` that thin device `dev` maps, as `added` extents (cut at the range's
/// ends): what a device reads other than zeroes there. Reads only the nodes on the path to
/// the range's first block and those holding keys in the range, so listing the grown tail of
/// a large device costs about its size, not the device's.
pub fn mapped_in(
    src: &dyn MetadataSource,
    sb: &Superblock,
    dev: u64,
    bytes: Range<u64>,
) -> Result<ChangeSet> {
    let mut tree = mapping::device_tree(src, sb, dev)?;
    let block = sb.data_block_bytes();
    if bytes.is_empty() {
        return Ok(ChangeSet::empty(block));
    }
    let blocks = bytes.start / block.0..=(bytes.end - 1) / block.0;
    let mut out = Emitter::new(src.name(), block);
    list_mapped(&mut tree, blocks, &mut out)?;
    let whole = out.finish()?;
    let cut = whole.extents().iter().filter_map(|e| {
        let from = e.offset.0.max(bytes.start);
        let to = (e.offset.0 + e.length.0).min(bytes.end);
        (from < to).then(|| Extent::new(from, to - from, e.kind))
    });
    ChangeSet::from_extents(block, cut)
}

/// Emit every virtual block in `blocks` mapped in `tree` as `added`, skipping unread the
/// subtrees wholly outside the range (and hinting only the children that overlap it).
fn list_mapped(
    tree: &mut TreeCursor<'_>,
    blocks: RangeInclusive<u64>,
    out: &mut Emitter<'_>,
) -> Result<()> {
    let (first, last) = (*blocks.start(), *blocks.end());
    loop {
        match tree.front() {
            Front::End => return Ok(()),
            Front::Subtree { lo, .. } if lo > last => return Ok(()),
            Front::Entry { key, .. } if key > last => return Ok(()),
            Front::Subtree { hi: Some(hi), .. } if hi <= first => tree.advance(),
            Front::Entry { key, .. } if key < first => tree.advance(),
            Front::Subtree { .. } => {
                tree.expand()?;
                let children = tree.fresh_children();
                let next_lo = children.iter().skip(1).map(|c| Some(c.0)).chain([None]);
                let wanted = children
                    .iter()
                    .zip(next_lo)
                    .filter(|((lo, _), hi)| *lo <= last && hi.is_none_or(|h| h > first))
                    .map(|(c, _)| *c)
                    .collect();
                prefetch(tree, wanted);
            }
            Front::Entry { key, .. } => {
                out.emit(key, ExtentKind::Added)?;
                tree.advance();
            }
        }
    }
}

/// Diff two device mapping trees (`old = None`: everything in `new`), with `block_bytes` per
/// virtual block.
pub fn diff_trees(
    name: &str,
    old: Option<TreeCursor<'_>>,
    mut new: TreeCursor<'_>,
    block_bytes: Bytes,
) -> Result<(ChangeSet, DiffStats)> {
    let mut out = Emitter::new(name, block_bytes);
    let mut stats = DiffStats::default();
    let Some(mut old) = old else {
        list_mapped(&mut new, 0..=u64::MAX, &mut out)?;
        stats.nodes_read = new.nodes_read();
        return Ok((out.finish()?, stats));
    };
    loop {
        match (old.front(), new.front()) {
            (Front::End, Front::End) => break,
            (Front::Subtree { block: a, .. }, Front::Subtree { block: b, .. }) if a == b => {
                old.advance();
                new.advance();
                stats.shared_subtrees_skipped += 1;
            }
            (Front::Entry { key: ka, value: va }, Front::Entry { key: kb, value: vb }) => {
                if ka == kb && diff_same_keyed_leaves(&mut old, &mut new, &mut out)? {
                    continue;
                }
                if ka == kb {
                    if BlockTime::from_raw(va).data_block != BlockTime::from_raw(vb).data_block {
                        out.emit(ka, ExtentKind::Changed)?;
                    }
                    old.advance();
                    new.advance();
                } else if ka < kb {
                    out.emit(ka, ExtentKind::Removed)?;
                    old.advance();
                } else {
                    out.emit(kb, ExtentKind::Added)?;
                    new.advance();
                }
            }
            (Front::Entry { key, .. }, Front::End) => {
                out.emit(key, ExtentKind::Removed)?;
                old.advance();
            }
            (Front::End, Front::Entry { key, .. }) => {
                out.emit(key, ExtentKind::Added)?;
                new.advance();
            }
            // An entry below a subtree's range can't be in that subtree: it is one-sided.
            (Front::Entry { key, .. }, Front::Subtree { lo, .. }) if key < lo => {
                out.emit(key, ExtentKind::Removed)?;
                old.advance();
            }
            (Front::Subtree { lo, .. }, Front::Entry { key, .. }) if key < lo => {
                out.emit(key, ExtentKind::Added)?;
                new.advance();
            }
            // Two different subtrees: open the one that starts first (both on a tie, so that
            // trees of equal height meet again at shared children).
            (Front::Subtree { lo: la, .. }, Front::Subtree { lo: lb, .. }) => {
                let (open_old, open_new) = (la <= lb, lb <= la);
                if open_old {
                    old.expand()?;
                }
                if open_new {
                    new.expand()?;
                }
                match (open_old, open_new) {
                    // One source (always, from `diff_devices`): hint both in walk order.
                    (true, true) if old.same_source(&new) => prefetch(
                        &old,
                        merge_by_key(unshared(&old, &new), unshared(&new, &old)),
                    ),
                    _ => {
                        if open_old {
                            prefetch(&old, unshared(&old, &new));
                        }
                        if open_new {
                            prefetch(&new, unshared(&new, &old));
                        }
                    }
                }
            }
            (Front::Subtree { .. }, _) => {
                old.expand()?;
                prefetch(&old, unshared(&old, &new));
            }
            (_, Front::Subtree { .. }) => {
                new.expand()?;
                prefetch(&new, unshared(&new, &old));
            }
        }
    }
    stats.nodes_read = old.nodes_read() + new.nodes_read();
    Ok((out.finish()?, stats))
}

/// If the rest of both cursors' current leaves hold the same keys (a leaf the kernel copied on
/// write keeps its keys; only changed values differ), compare them in one pass over the raw
/// arrays, emit the changed blocks, move both cursors past the leaves and return `true`.
/// Otherwise do nothing and return `false` (the caller steps entry by entry).
fn diff_same_keyed_leaves(
    old: &mut TreeCursor<'_>,
    new: &mut TreeCursor<'_>,
    out: &mut Emitter<'_>,
) -> Result<bool> {
    let (Some(a), Some(b)) = (old.leaf_rest(), new.leaf_rest()) else {
        return Ok(false);
    };
    if a.keys != b.keys {
        return Ok(false);
    }
    if a.values != b.values {
        for i in 0..a.len() {
            let (va, vb) = (a.value_u64(i), b.value_u64(i));
            if va != vb && BlockTime::from_raw(va).data_block != BlockTime::from_raw(vb).data_block
            {
                out.emit(a.key(i), ExtentKind::Changed)?;
            }
        }
    }
    old.skip_leaf_rest();
    new.skip_leaf_rest();
    Ok(true)
}

/// After `this` opened an internal node, those of its children (`(lowest key, block)`, in key
/// order) that `other`'s current node does not share: they are the nodes the walk will open
/// next (shared ones are skipped unread).
fn unshared(this: &TreeCursor<'_>, other: &TreeCursor<'_>) -> Vec<(u64, u64)> {
    let fresh = this.fresh_children();
    if fresh.is_empty() {
        return fresh;
    }
    let mut theirs = other.top_children();
    theirs.sort_unstable();
    fresh
        .into_iter()
        .filter(|(_, b)| theirs.binary_search(b).is_err())
        .collect()
}

/// Two key-ordered child lists as one, in key order (the order the lock-step walk opens them;
/// `a` first on equal keys).
fn merge_by_key(a: Vec<(u64, u64)>, b: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(child) => out.push(child),
            None => return out,
        }
    }
}

/// Read ahead `children` through `cursor`'s source: a source that reads them together (the
/// page cache's read-ahead, the read-ahead workers) does not pay one device round trip per
/// node, in the order the walk will want them. Only a hint; the walk reads and checks as before.
fn prefetch(cursor: &TreeCursor<'_>, children: Vec<(u64, u64)>) {
    let blocks: Vec<u64> = children.into_iter().map(|(_, b)| b).collect();
    cursor.prefetch(&blocks);
}

/// Turns per-block results into merged byte extents.
struct Emitter<'n> {
    name: &'n str,
    block_bytes: u64,
    builder: ChangeSetBuilder,
}

impl<'n> Emitter<'n> {
    fn new(name: &'n str, block_bytes: Bytes) -> Self {
        Emitter {
            name,
            block_bytes: block_bytes.0,
            builder: ChangeSetBuilder::new(block_bytes),
        }
    }

    /// Record virtual block `vblock` as `kind`.
    fn emit(&mut self, vblock: u64, kind: ExtentKind) -> Result<()> {
        let offset = vblock
            .checked_mul(self.block_bytes)
            .filter(|o| o.checked_add(self.block_bytes).is_some())
            .ok_or_else(|| Error::Corrupt {
                source_name: self.name.to_string(),
                what: "thin-pool metadata",
                detail: format!(
                    "virtual block {vblock} lies past the end of a 64-bit device; check the \
                     pool with thin_check, or run a full sync"
                ),
            })?;
        self.builder
            .push(Extent::new(offset, self.block_bytes, kind));
        Ok(())
    }

    fn finish(self) -> Result<ChangeSet> {
        self.builder.build()
    }
}
