//! Hash trees over block hashes, and their top-down comparison.
//!
//! The leaves are the blake3 hashes of each block (the same walker as every other block-hash
//! compare); each node above hashes up to [`FANOUT`] children, and the top level is one root.
//! Two trees of the same shape (same length and block size) are compared from the root down:
//! only the children of nodes that differ are looked at, so a mostly-equal pair costs a few
//! hashes per level instead of one per block. The other tree sits behind [`TreePeer`]: an
//! in-memory [`HashTree`], or a remote side answering over a byte channel ([`super::remote`]).
//!
//! Memory: 32 bytes per block for the leaves, plus about 1/63 of that for the levels above
//! (a 1 TiB device at 64 KiB blocks: 512 MiB). Larger block sizes shrink it proportionally.

use super::walker::walk;
use crate::error::{Error, Result};
use crate::units::Bytes;
use std::path::Path;

/// Children per node.
pub const FANOUT: u64 = 64;

/// Most nodes one [`TreePeer::nodes`] call asks for (bounds the peer's reply to 2 MiB).
pub const MAX_NODES_PER_ASK: usize = 65536;

/// The block hashes of one file or device's first `len` bytes, and the levels above them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTree {
    block_size: Bytes,
    len: Bytes,
    /// `levels[0]` are the block hashes; the last level holds the root (empty input: one
    /// empty level).
    levels: Vec<Vec<blake3::Hash>>,
}

fn parent(children: &[blake3::Hash]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_derive_key("lvmsync 2026-11 hash tree node v1");
    for c in children {
        h.update(c.as_bytes());
    }
    h.finalize()
}

impl HashTree {
    /// The tree over `leaves`, the hashes of consecutive `block_size` blocks of `len` bytes.
    pub fn from_leaves(block_size: Bytes, len: Bytes, leaves: Vec<blake3::Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("non-empty");
            let up = below.chunks(FANOUT as usize).map(parent).collect();
            levels.push(up);
        }
        HashTree {
            block_size,
            len,
            levels,
        }
    }

    /// Hash the first `len` bytes of the file or device at `path` (which must be at least
    /// that long) in `block_size` blocks and build the tree.
    pub fn build(path: &Path, len: Bytes, block_size: Bytes) -> Result<Self> {
        super::check_block_size(block_size)?;
        let (input, have) = super::open_input(path)?;
        if have < len.0 {
            return Err(Error::InvalidArgument(format!(
                "{}: has {have} bytes, fewer than the {} to hash",
                path.display(),
                len.0
            )));
        }
        let mut leaves = Vec::with_capacity(len.0.div_ceil(block_size.0) as usize);
        walk(&[input], len.0, block_size.0, |_, h| leaves.push(h[0]))?;
        Ok(Self::from_leaves(block_size, len, leaves))
    }

    /// The block size of the leaves.
    pub fn block_size(&self) -> Bytes {
        self.block_size
    }

    /// How many bytes the leaves cover.
    pub fn len(&self) -> Bytes {
        self.len
    }

    /// True when the tree covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len.0 == 0
    }

    /// Number of blocks (leaves).
    pub fn blocks(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// Number of levels, leaves included.
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The root hash (of an empty tree: the hash of no children).
    pub fn root(&self) -> blake3::Hash {
        match self.levels.last().map(Vec::as_slice) {
            Some([root]) => *root,
            _ => parent(&[]),
        }
    }

    /// Node `index` of `level` (0 = leaves), if it exists.
    pub fn node(&self, level: usize, index: u64) -> Option<blake3::Hash> {
        self.levels.get(level)?.get(index as usize).copied()
    }

    /// The hashes of `indices` on `level`; an index outside the tree is an error (a peer
    /// asking for it is confused or hostile).
    pub fn nodes(&self, level: usize, indices: &[u64]) -> Result<Vec<blake3::Hash>> {
        indices
            .iter()
            .map(|&i| {
                self.node(level, i).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "hash tree node {i} of level {level} does not exist (tree of {} blocks)",
                        self.blocks()
                    ))
                })
            })
            .collect()
    }
}

/// The other tree of a comparison: answers "the hashes of these nodes of this level".
pub trait TreePeer {
    /// Hashes of `indices` (at most [`MAX_NODES_PER_ASK`]) on `level`, in the same order.
    fn nodes(&mut self, level: usize, indices: &[u64]) -> Result<Vec<blake3::Hash>>;
}

impl TreePeer for HashTree {
    fn nodes(&mut self, level: usize, indices: &[u64]) -> Result<Vec<blake3::Hash>> {
        HashTree::nodes(self, level, indices)
    }
}

/// The blocks (leaf indices, ascending) where `local` and `peer`'s tree of the same shape
/// differ, found from the root down: one round of asks per level, each only for the children
/// of nodes that differed on the level above.
pub fn differing_blocks(local: &HashTree, peer: &mut dyn TreePeer) -> Result<Vec<u64>> {
    if local.blocks() == 0 {
        return Ok(Vec::new());
    }
    let mut candidates = vec![0u64];
    for level in (0..local.depth()).rev() {
        let mut differing = Vec::new();
        for ask in candidates.chunks(MAX_NODES_PER_ASK) {
            let theirs = peer.nodes(level, ask)?;
            if theirs.len() != ask.len() {
                return Err(Error::InvalidArgument(format!(
                    "the peer answered {} hashes for {} nodes",
                    theirs.len(),
                    ask.len()
                )));
            }
            for (&i, h) in ask.iter().zip(&theirs) {
                if local.node(level, i) != Some(*h) {
                    differing.push(i);
                }
            }
        }
        if level == 0 {
            return Ok(differing);
        }
        let below = local.levels[level - 1].len() as u64;
        candidates = differing
            .iter()
            .flat_map(|&i| (i * FANOUT)..((i + 1) * FANOUT).min(below))
            .collect();
    }
    unreachable!("the loop returns at level 0")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree whose leaf `i` is the hash of `seed(i)`.
    fn tree(blocks: u64, seed: impl Fn(u64) -> u64) -> HashTree {
        let leaves = (0..blocks)
            .map(|i| blake3::hash(&seed(i).to_le_bytes()))
            .collect();
        HashTree::from_leaves(Bytes(4096), Bytes(blocks * 4096), leaves)
    }

    /// Counts what a peer is asked, to check the descent skips equal subtrees.
    struct Counting(HashTree, usize);

    impl TreePeer for Counting {
        fn nodes(&mut self, level: usize, indices: &[u64]) -> Result<Vec<blake3::Hash>> {
            self.1 += indices.len();
            self.0.nodes(level, indices)
        }
    }

    #[test]
    fn finds_exactly_the_changed_blocks_and_skips_equal_subtrees() {
        let n = 64 * 64 * 3 + 17; // four levels, ragged last nodes
        let changed = [0u64, 1, 4095, 4096, 9000, n - 1];
        let a = tree(n, |i| i);
        let b = tree(n, |i| {
            if changed.contains(&i) {
                i + 1_000_000
            } else {
                i
            }
        });
        let mut peer = Counting(b, 0);
        assert_eq!(differing_blocks(&a, &mut peer).unwrap(), changed);
        // Each level asks at most 64 children per differing parent, never every block.
        assert!(peer.1 < 64 * changed.len() * a.depth(), "asked {}", peer.1);
        let mut same = Counting(a.clone(), 0);
        assert!(differing_blocks(&a, &mut same).unwrap().is_empty());
        assert_eq!(same.1, 1, "equal trees: the root alone decides");
    }

    #[test]
    fn single_block_and_empty_trees() {
        let a = tree(1, |i| i);
        assert_eq!(a.depth(), 1);
        assert_eq!(differing_blocks(&a, &mut tree(1, |_| 7)).unwrap(), [0]);
        let e = tree(0, |i| i);
        assert!(differing_blocks(&e, &mut e.clone()).unwrap().is_empty());
    }

    #[test]
    fn asking_outside_the_tree_is_an_error() {
        let a = tree(10, |i| i);
        assert!(a.nodes(0, &[10]).is_err());
        assert!(a.nodes(5, &[0]).is_err());
    }
}
