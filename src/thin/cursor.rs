//! The one bounded btree walker: an in-order cursor over a tree's entries that can also stop
//! at a not-yet-read subtree.
//!
//! The cursor's front is either an unread subtree (its block number and key range), a leaf
//! entry, or the end. A caller may [`TreeCursor::expand`] a subtree (read it, push its entries)
//! or [`TreeCursor::advance`] past it without reading it. That is what lets the diff skip a
//! subtree whose block number is the same in both trees, lets a point lookup read one path,
//! and lets a full walk read everything, all through the same checks:
//!
//! - every node's checksum, location, kind, value size and counts ([`NodeHeader::decode`]);
//! - every key inside the key range its parent gives it, so entries come out strictly sorted;
//! - no block that is an ancestor of itself (cycles), no block 0 (the superblock) and no block
//!   past the metadata's end, and at most [`MAX_DEPTH`] levels.
//!
//! A node reached twice through different parents would need its keys in two disjoint ranges,
//! so work is bounded by the number of metadata blocks even for hostile input. Memory is one
//! block per level.

use super::node::{NodeHeader, NodeKind, NODE_HEADER_SIZE};
use super::source::{le_u64, Block, MetadataSource, NodeChecksum, METADATA_BLOCK_SIZE};
use crate::error::{Error, Result};

/// Deepest tree accepted. 4 KiB nodes at the kernel's minimum fill reach 2^64 keys in fewer
/// than 12 levels, so anything deeper is corrupt.
pub const MAX_DEPTH: usize = 16;

/// What the cursor is positioned at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// An unread subtree rooted at `block`, holding keys in `lo..hi` (`hi = None`: unbounded).
    Subtree {
        /// Block number of the subtree's root node.
        block: u64,
        /// Lowest key the subtree may hold.
        lo: u64,
        /// Keys are below this (exclusive), if bounded.
        hi: Option<u64>,
    },
    /// A leaf entry: its key and the first 8 bytes of its value.
    Entry {
        /// The entry's key.
        key: u64,
        /// The value's first 8 bytes as a little-endian `u64`.
        value: u64,
    },
    /// Every entry has been passed.
    End,
}

/// The not-yet-passed entries of the leaf at a cursor's front, as the node's raw bytes
/// (checked by [`NodeHeader::decode`]): entry `i` has key `keys[8i..8i+8]` and value
/// `values[value_size*i..value_size*(i+1)]`, little-endian.
#[derive(Debug, Clone, Copy)]
pub struct LeafRest<'b> {
    /// The keys, 8 bytes each.
    pub keys: &'b [u8],
    /// The values, `value_size` bytes each.
    pub values: &'b [u8],
    /// Size of one value.
    pub value_size: usize,
}

impl LeafRest<'_> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.keys.len() / 8
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key `i`.
    pub fn key(&self, i: usize) -> u64 {
        le_u64(self.keys, 8 * i)
    }

    /// The first 8 bytes of value `i` as a little-endian `u64`.
    pub fn value_u64(&self, i: usize) -> u64 {
        le_u64(self.values, self.value_size * i)
    }
}

/// One read node on the path from the root to the front.
struct Frame {
    block: u64,
    buf: Box<Block>,
    hdr: NodeHeader,
    idx: usize,
    hi: Option<u64>,
}

/// An in-order cursor over one btree; see the module docs.
pub struct TreeCursor<'s> {
    src: &'s dyn MetadataSource,
    tree: String,
    leaf_value_size: usize,
    limit: u64,
    pending_root: Option<u64>,
    stack: Vec<Frame>,
    spare: Vec<Box<Block>>,
    nodes_read: u64,
}

impl<'s> TreeCursor<'s> {
    /// A cursor at the (unread) root `root` of the tree named `tree` (for messages, e.g.
    /// "mapping tree of thin device 3"), whose leaves hold `leaf_value_size`-byte values and
    /// whose nodes all lie below block `limit`.
    pub fn new(
        src: &'s dyn MetadataSource,
        tree: String,
        root: u64,
        leaf_value_size: usize,
        limit: u64,
    ) -> Self {
        TreeCursor {
            src,
            tree,
            leaf_value_size,
            limit,
            pending_root: Some(root),
            stack: Vec::new(),
            spare: Vec::new(),
            nodes_read: 0,
        }
    }

    /// Number of nodes read so far (the diff's work measure).
    pub fn nodes_read(&self) -> u64 {
        self.nodes_read
    }

    /// What the cursor is at.
    pub fn front(&self) -> Front {
        if let Some(block) = self.pending_root {
            return Front::Subtree {
                block,
                lo: 0,
                hi: None,
            };
        }
        let Some(top) = self.stack.last() else {
            return Front::End;
        };
        let key = top.hdr.key(&top.buf, top.idx);
        let value = top.hdr.value_u64(&top.buf, top.idx);
        match top.hdr.kind {
            NodeKind::Leaf => Front::Entry { key, value },
            NodeKind::Internal => Front::Subtree {
                block: value,
                lo: key,
                hi: self.child_hi(top),
            },
        }
    }

    /// The full value bytes of the entry at the front (empty unless the front is an entry).
    pub fn value_bytes(&self) -> &[u8] {
        match self.stack.last() {
            Some(top) if self.pending_root.is_none() && top.hdr.kind == NodeKind::Leaf => {
                top.hdr.value(&top.buf, top.idx)
            }
            _ => &[],
        }
    }

    /// The rest of the leaf the front entry is in: the keys and values from the front to the
    /// leaf's end, as the raw bytes of the node (`None` unless the front is a leaf entry). Lets
    /// the diff compare two leaves' worth of entries at once; [`TreeCursor::skip_leaf_rest`]
    /// then moves past them.
    pub fn leaf_rest(&self) -> Option<LeafRest<'_>> {
        let top = self.stack.last()?;
        if self.pending_root.is_some() || top.hdr.kind != NodeKind::Leaf {
            return None;
        }
        let (idx, n, vs) = (top.idx, top.hdr.nr_entries, top.hdr.value_size);
        let values_at = NODE_HEADER_SIZE + 8 * top.hdr.max_entries;
        Some(LeafRest {
            keys: &top.buf[NODE_HEADER_SIZE + 8 * idx..NODE_HEADER_SIZE + 8 * n],
            values: &top.buf[values_at + vs * idx..values_at + vs * n],
            value_size: vs,
        })
    }

    /// Move past every entry [`TreeCursor::leaf_rest`] returns (nothing unless the front is a
    /// leaf entry).
    pub fn skip_leaf_rest(&mut self) {
        if self.pending_root.is_some() {
            return;
        }
        match self.stack.last_mut() {
            Some(top) if top.hdr.kind == NodeKind::Leaf => top.idx = top.hdr.nr_entries,
            _ => return,
        }
        self.pop_exhausted();
    }

    /// Move past the front (an entry, or a subtree without reading it).
    pub fn advance(&mut self) {
        if self.pending_root.take().is_some() {
            return;
        }
        if let Some(top) = self.stack.last_mut() {
            top.idx += 1;
        }
        self.pop_exhausted();
    }

    /// Read the subtree at the front and position the cursor at its first entry or child.
    /// Does nothing unless the front is a subtree.
    pub fn expand(&mut self) -> Result<()> {
        let Front::Subtree { block, lo, hi } = self.front() else {
            return Ok(());
        };
        if self.pending_root.take().is_none() {
            if let Some(top) = self.stack.last_mut() {
                top.idx += 1;
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.corrupt(block, format!("tree deeper than {MAX_DEPTH} levels")));
        }
        if self.stack.iter().any(|f| f.block == block) {
            return Err(self.corrupt(block, "cycle: node is its own ancestor".into()));
        }
        if block == 0 || block >= self.limit {
            return Err(self.corrupt(
                block,
                format!(
                    "node block number out of range (metadata has {} blocks)",
                    self.limit
                ),
            ));
        }
        let mut buf = self
            .spare
            .pop()
            .unwrap_or_else(|| Box::new([0u8; METADATA_BLOCK_SIZE]));
        let checked = self.src.read_node(block, &mut buf)?;
        self.nodes_read += 1;
        let hdr = match checked {
            NodeChecksum::Unchecked => NodeHeader::decode(&buf, block, self.leaf_value_size),
            NodeChecksum::Verified => {
                NodeHeader::decode_verified(&buf, block, self.leaf_value_size)
            }
        }
        .map_err(|e| self.corrupt(block, e))?;
        if hdr.nr_entries > 0 {
            let first = hdr.key(&buf, 0);
            let last = hdr.key(&buf, hdr.nr_entries - 1);
            if first < lo || hi.is_some_and(|h| last >= h) {
                let range = match hi {
                    Some(h) => format!("{lo}..{h}"),
                    None => format!("{lo}.."),
                };
                return Err(self.corrupt(
                    block,
                    format!("keys {first}..={last} outside the range {range} its parent gives"),
                ));
            }
        }
        self.stack.push(Frame {
            block,
            buf,
            hdr,
            idx: 0,
            hi,
        });
        self.pop_exhausted();
        Ok(())
    }

    /// The children of the internal node [`TreeCursor::expand`] has just read (the cursor is at
    /// its first child), as `(lowest key, block)` in key order; empty otherwise. These are the
    /// nodes a walk may open next.
    pub fn fresh_children(&self) -> Vec<(u64, u64)> {
        match self.stack.last() {
            Some(top) if top.idx == 0 && top.hdr.kind == NodeKind::Internal => {
                (0..top.hdr.nr_entries)
                    .map(|i| (top.hdr.key(&top.buf, i), top.hdr.value_u64(&top.buf, i)))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// All children of the internal node at the top of the path (empty if it is a leaf).
    pub fn top_children(&self) -> Vec<u64> {
        match self.stack.last() {
            Some(top) if top.hdr.kind == NodeKind::Internal => (0..top.hdr.nr_entries)
                .map(|i| top.hdr.value_u64(&top.buf, i))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether `other` reads from the same source as this cursor.
    pub fn same_source(&self, other: &TreeCursor<'_>) -> bool {
        std::ptr::addr_eq(self.src, other.src)
    }

    /// Pass a read-ahead hint for `blocks` to the source (see [`MetadataSource::prefetch`]).
    pub fn prefetch(&self, blocks: &[u64]) {
        if !blocks.is_empty() {
            self.src.prefetch(blocks);
        }
    }

    /// Expand until the front is an entry or the end.
    pub fn next_entry(&mut self) -> Result<Front> {
        loop {
            match self.front() {
                Front::Subtree { .. } => {
                    self.expand()?;
                    let children: Vec<u64> =
                        self.fresh_children().into_iter().map(|(_, b)| b).collect();
                    self.prefetch(&children);
                }
                other => return Ok(other),
            }
        }
    }

    /// Find the entry with `key`, reading only the nodes on its path; the cursor is left at
    /// that entry or past where it would be.
    pub fn seek(&mut self, key: u64) -> Result<Option<u64>> {
        loop {
            match self.front() {
                Front::End => return Ok(None),
                Front::Subtree { hi, .. } if hi.is_some_and(|h| h <= key) => self.advance(),
                Front::Subtree { .. } => self.expand()?,
                Front::Entry { key: k, .. } if k < key => self.advance(),
                Front::Entry { key: k, value } => return Ok((k == key).then_some(value)),
            }
        }
    }

    /// The exclusive upper key bound of the child at `frame`'s index.
    fn child_hi(&self, frame: &Frame) -> Option<u64> {
        if frame.idx + 1 < frame.hdr.nr_entries {
            Some(frame.hdr.key(&frame.buf, frame.idx + 1))
        } else {
            frame.hi
        }
    }

    /// Drop finished nodes from the top of the path, keeping their buffers for reuse.
    fn pop_exhausted(&mut self) {
        while let Some(top) = self.stack.last() {
            if top.idx < top.hdr.nr_entries {
                break;
            }
            if let Some(frame) = self.stack.pop() {
                self.spare.push(frame.buf);
            }
        }
    }

    /// A corruption error naming the source, the tree and the node path down to `block`.
    fn corrupt(&self, block: u64, detail: String) -> Error {
        let mut path: Vec<String> = self.stack.iter().map(|f| f.block.to_string()).collect();
        path.push(block.to_string());
        Error::Corrupt {
            source_name: self.src.name().to_string(),
            what: "thin-pool metadata",
            detail: format!(
                "{}, node path {}: {detail}; check the pool with thin_check, or run a full sync",
                self.tree,
                path.join(" -> ")
            ),
        }
    }
}
