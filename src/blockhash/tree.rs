//! Hash trees over block hashes, and their top-down comparison.
//!
//! The leaves are the blake3 hashes of each block (the same walker as every other block-hash
//! compare); each node above hashes up to [`FANOUT`] children, and the top level is one root.
//! Two trees of the same shape (same length and block size) are compared from the root down:
//! only the children of nodes that differ are looked at, so a mostly-equal pair costs a few
//! hashes per level instead of one per block. The other tree sits behind [`TreePeer`]: an
//! in-memory [`HashTree`], or a remote side answering over a byte channel ([`super::remote`]).
//!
//! Memory is bounded whatever the device size: each level keeps up to [`IN_MEMORY`] hashes in
//! memory and spills the rest to an unlinked temporary file (in `$TMPDIR`; 32 bytes per block,
//! so 512 MiB of temp file for 1 TiB at 64 KiB blocks), read back only for the nodes asked for.

use super::walker::walk;
use crate::error::{Error, Result};
use crate::units::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Children per node.
pub const FANOUT: u64 = 64;

/// Most nodes one [`TreePeer::nodes`] call asks for (bounds the peer's reply to 2 MiB).
pub const MAX_NODES_PER_ASK: usize = 65536;

/// Hashes a level keeps in memory before it spills to a temporary file (4 MiB).
pub const IN_MEMORY: usize = 1 << 17;

fn parent(children: &[blake3::Hash]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_derive_key("lvmsync 2026-11 hash tree node v1");
    for c in children {
        h.update(c.as_bytes());
    }
    h.finalize()
}

fn temp_err(e: std::io::Error) -> Error {
    Error::io(std::env::temp_dir(), e)
}

/// A new read-write file in `$TMPDIR` with no name (O_TMPFILE): it vanishes with the process.
fn unlinked_temp_file() -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_TMPFILE)
        .open(std::env::temp_dir())
        .map_err(temp_err)
}

/// One level's hashes, in order: the first `spilled` in a temporary file, the rest in memory.
#[derive(Debug, Default)]
struct Level {
    file: Option<File>,
    spilled: u64,
    tail: Vec<blake3::Hash>,
}

impl Level {
    fn len(&self) -> u64 {
        self.spilled + self.tail.len() as u64
    }

    fn push(&mut self, h: blake3::Hash) -> Result<()> {
        self.tail.push(h);
        if self.tail.len() >= IN_MEMORY {
            let file = match &mut self.file {
                Some(f) => f,
                None => self.file.insert(unlinked_temp_file()?),
            };
            let bytes: Vec<u8> = self.tail.iter().flat_map(|h| *h.as_bytes()).collect();
            file.write_all_at(&bytes, self.spilled * 32)
                .map_err(temp_err)?;
            self.spilled += self.tail.len() as u64;
            self.tail.clear();
        }
        Ok(())
    }

    fn get(&self, i: u64) -> Result<Option<blake3::Hash>> {
        if i >= self.len() {
            return Ok(None);
        }
        if i >= self.spilled {
            return Ok(Some(self.tail[(i - self.spilled) as usize]));
        }
        let mut b = [0u8; 32];
        let file = self.file.as_ref().expect("spilled hashes have a file");
        file.read_exact_at(&mut b, i * 32).map_err(temp_err)?;
        Ok(Some(blake3::Hash::from_bytes(b)))
    }
}

/// The block hashes of one file or device's first `len` bytes, and the levels above them.
#[derive(Debug)]
pub struct HashTree {
    /// `levels[0]` are the block hashes; the last level holds the root (empty input: one
    /// empty level).
    levels: Vec<Level>,
}

/// Builds the levels as the leaves arrive: every [`FANOUT`] hashes of a level make one hash
/// of the level above, so nothing is read back.
#[derive(Default)]
struct Builder {
    levels: Vec<Level>,
    pending: Vec<Vec<blake3::Hash>>,
}

impl Builder {
    fn add(&mut self, level: usize, h: blake3::Hash) -> Result<()> {
        if self.levels.len() == level {
            self.levels.push(Level::default());
            self.pending.push(Vec::with_capacity(FANOUT as usize));
        }
        self.levels[level].push(h)?;
        self.pending[level].push(h);
        if self.pending[level].len() == FANOUT as usize {
            let up = parent(&self.pending[level]);
            self.pending[level].clear();
            self.add(level + 1, up)?;
        }
        Ok(())
    }

    /// Close the partial groups bottom up until one level holds a single root.
    fn finish(mut self) -> Result<Vec<Level>> {
        if self.levels.is_empty() {
            self.levels.push(Level::default());
        }
        let mut level = 0;
        while self.levels[level].len() > 1 {
            if !self.pending[level].is_empty() {
                let up = parent(&self.pending[level]);
                self.pending[level].clear();
                self.add(level + 1, up)?;
            }
            level += 1;
        }
        Ok(self.levels)
    }
}

impl HashTree {
    /// The tree over `leaves`, the hashes of consecutive blocks (tests build trees directly).
    #[cfg(test)]
    fn from_leaves(leaves: impl IntoIterator<Item = blake3::Hash>) -> Result<Self> {
        let mut b = Builder::default();
        for h in leaves {
            b.add(0, h)?;
        }
        Ok(HashTree {
            levels: b.finish()?,
        })
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
        let mut b = Builder::default();
        let mut failed = None;
        walk(&[input], len.0, block_size.0, |_, h| {
            if failed.is_none() {
                failed = b.add(0, h[0]).err();
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(HashTree {
            levels: b.finish()?,
        })
    }

    /// Number of blocks (leaves).
    pub fn blocks(&self) -> u64 {
        self.levels[0].len()
    }

    /// Number of levels, leaves included.
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The root hash (of an empty tree: the hash of no children).
    pub fn root(&self) -> blake3::Hash {
        let top = self.levels.last().expect("at least one level");
        match top.get(0) {
            Ok(Some(root)) if top.len() == 1 => root,
            _ => parent(&[]),
        }
    }

    /// The hashes of `indices` on `level` (0 = leaves); an index outside the tree is an error
    /// (a peer asking for it is confused or hostile).
    pub fn nodes(&self, level: usize, indices: &[u64]) -> Result<Vec<blake3::Hash>> {
        let missing = |i: u64| {
            Error::InvalidArgument(format!(
                "hash tree node {i} of level {level} does not exist (tree of {} blocks)",
                self.blocks()
            ))
        };
        let l = self.levels.get(level).ok_or_else(|| missing(0))?;
        indices
            .iter()
            .map(|&i| l.get(i)?.ok_or_else(|| missing(i)))
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
            let mine = local.nodes(level, ask)?;
            let theirs = peer.nodes(level, ask)?;
            if theirs.len() != ask.len() {
                return Err(Error::InvalidArgument(format!(
                    "the peer answered {} hashes for {} nodes",
                    theirs.len(),
                    ask.len()
                )));
            }
            for ((&i, a), b) in ask.iter().zip(&mine).zip(&theirs) {
                if a != b {
                    differing.push(i);
                }
            }
        }
        if level == 0 {
            return Ok(differing);
        }
        let below = local.levels[level - 1].len();
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

    fn leaf(i: u64) -> blake3::Hash {
        blake3::hash(&i.to_le_bytes())
    }

    /// A tree whose leaf `i` is the hash of `seed(i)`.
    fn tree(blocks: u64, seed: impl Fn(u64) -> u64) -> HashTree {
        let leaves = (0..blocks).map(|i| leaf(seed(i)));
        HashTree::from_leaves(leaves).unwrap()
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
        let mut same = Counting(tree(n, |i| i), 0);
        assert!(differing_blocks(&a, &mut same).unwrap().is_empty());
        assert_eq!(same.1, 1, "equal trees: the root alone decides");
    }

    #[test]
    fn single_block_and_empty_trees() {
        let a = tree(1, |i| i);
        assert_eq!(a.depth(), 1);
        assert_eq!(differing_blocks(&a, &mut tree(1, |_| 7)).unwrap(), [0]);
        let e = tree(0, |i| i);
        assert!(differing_blocks(&e, &mut tree(0, |i| i))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn spilled_levels_read_back_what_was_built() {
        // More leaves than a level keeps in memory: level 0 spills to the temp file.
        let n = IN_MEMORY as u64 + 64 * 100 + 3;
        let t = tree(n, |i| i);
        // The oracle: levels built directly from the definition, all in memory.
        let mut levels = vec![(0..n).map(leaf).collect::<Vec<_>>()];
        while levels.last().unwrap().len() > 1 {
            let up = levels.last().unwrap().chunks(64).map(parent).collect();
            levels.push(up);
        }
        assert_eq!(t.depth(), levels.len());
        assert_eq!(t.root(), levels.last().unwrap()[0]);
        let probe = [0, 1, IN_MEMORY as u64 - 1, IN_MEMORY as u64, n - 1];
        let want: Vec<_> = probe.iter().map(|&i| levels[0][i as usize]).collect();
        assert_eq!(t.nodes(0, &probe).unwrap(), want);
        assert_eq!(t.nodes(1, &[0, 2]).unwrap(), [levels[1][0], levels[1][2]]);
        let mut b = tree(n, |i| if i == IN_MEMORY as u64 + 5 { 0 } else { i });
        assert_eq!(
            differing_blocks(&t, &mut b).unwrap(),
            [IN_MEMORY as u64 + 5]
        );
    }

    #[test]
    fn asking_outside_the_tree_is_an_error() {
        let a = tree(10, |i| i);
        assert!(a.nodes(0, &[10]).is_err());
        assert!(a.nodes(5, &[0]).is_err());
    }
}
