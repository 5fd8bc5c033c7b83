//! Content fingerprints: the blake3-based identity of one state of a device or image.
//!
//! A fingerprint (version 2) is blake3 in derive-key mode (so it can never collide with a
//! plain hash of the same bytes) over the size as u64 LE followed by the plain blake3 hash of
//! every [`LEAF`] (1 MiB) of the first `size` bytes, in order (the last leaf may be short).
//! Leaves make it cheap: they are hashed in parallel, a leaf in a hole of a sparse file is the
//! precomputed [`zero_leaf`] hash without a read, and the block-hash compare of `send --base`
//! produces both images' leaves in the same pass that finds the changed blocks. The sender puts
//! the base's and the target's fingerprints in the header; the receiver records the target's
//! in its state file and, when it has no state file, computes the destination's own
//! fingerprint to check that a delta's base really is what it holds.

use super::header::Fingerprint;
use crate::error::Result;
use crate::units::Bytes;
use std::path::Path;

/// The key-derivation context: changing it changes every fingerprint.
const CONTEXT: &str = "lvmsync 2026-11 content fingerprint v2";

/// Bytes per leaf (independent of any block size).
pub const LEAF: u64 = 1 << 20;

/// Builds a fingerprint from its leaf hashes, pushed in order.
#[derive(Debug, Clone)]
pub struct Fingerprinter {
    hasher: blake3::Hasher,
}

impl Fingerprinter {
    /// A fingerprint of `size` bytes: push `ceil(size / LEAF)` leaf hashes, then finish.
    pub fn new(size: Bytes) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
        hasher.update(&size.0.to_le_bytes());
        Fingerprinter { hasher }
    }

    /// Add the next leaf's hash.
    pub fn push(&mut self, leaf: &blake3::Hash) {
        self.hasher.update(leaf.as_bytes());
    }

    /// The fingerprint.
    pub fn finish(&self) -> Fingerprint {
        Fingerprint(*self.hasher.finalize().as_bytes())
    }
}

/// Leaf hashes [`LeafHashes`] keeps at most: 16 MiB of hashes, the first 512 GiB of an image
/// (the encoder hashes leaves past it itself). Bounds the sender's memory whatever the size.
pub const MAX_KEPT_LEAVES: usize = 1 << 19;

/// The leaf hashes of one image, kept from its fingerprint so that the encoder can use a
/// leaf's hash as the record hash of a data run that is exactly that leaf (the same blake3 of
/// the same bytes) instead of hashing those bytes a second time.
#[derive(Debug, Clone, Default)]
pub struct LeafHashes {
    size: u64,
    hashes: Vec<[u8; 32]>,
}

impl LeafHashes {
    /// No hashes yet, for an image of `size` bytes: push its leaves' hashes in order.
    pub fn new(size: Bytes) -> Self {
        LeafHashes {
            size: size.0,
            hashes: Vec::new(),
        }
    }

    /// Keep the next leaf's hash (dropped past [`MAX_KEPT_LEAVES`]).
    pub fn push(&mut self, leaf: &blake3::Hash) {
        if self.hashes.len() < MAX_KEPT_LEAVES {
            self.hashes.push(*leaf.as_bytes());
        }
    }

    /// The blake3 of the image's bytes `offset..offset + len` when that range is exactly one
    /// leaf (a whole one, or the short last one) whose hash was kept.
    pub fn get(&self, offset: u64, len: usize) -> Option<[u8; 32]> {
        let whole = offset % LEAF == 0 && len as u64 == LEAF.min(self.size.saturating_sub(offset));
        let index = usize::try_from(offset / LEAF).ok()?;
        whole.then(|| self.hashes.get(index).copied()).flatten()
    }
}

/// Fingerprint the first `size` bytes of the file or block device at `path`; bytes past its
/// end count as zeroes. Leaves are hashed on several threads; holes are not read.
pub fn content_fingerprint(path: &Path, size: Bytes) -> Result<Fingerprint> {
    let mut fp = Fingerprinter::new(size);
    crate::blockhash::hash_leaves(path, size, |h| fp.push(h))?;
    Ok(fp.finish())
}

/// [`content_fingerprint`], keeping the leaf hashes for the encoder (a full send).
pub fn fingerprint_keeping_leaves(path: &Path, size: Bytes) -> Result<(Fingerprint, LeafHashes)> {
    let (mut fp, mut kept) = (Fingerprinter::new(size), LeafHashes::new(size));
    crate::blockhash::hash_leaves(path, size, |h| {
        fp.push(h);
        kept.push(h);
    })?;
    Ok((fp.finish(), kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The definition, computed directly from bytes.
    fn reference(bytes: &[u8], size: usize) -> Fingerprint {
        let mut padded = bytes[..bytes.len().min(size)].to_vec();
        padded.resize(size, 0);
        let mut fp = Fingerprinter::new(Bytes(size as u64));
        for leaf in padded.chunks(LEAF as usize) {
            fp.push(&blake3::hash(leaf));
        }
        fp.finish()
    }

    #[test]
    fn matches_the_definition_for_sparse_short_and_padded_files() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0u8; 5 * LEAF as usize + 12345];
        for (i, b) in bytes[2 * LEAF as usize..3 * LEAF as usize + 7]
            .iter_mut()
            .enumerate()
        {
            *b = (i % 251) as u8 + 1;
        }
        f.write_all(&bytes[..3 * LEAF as usize + 7]).unwrap();
        f.as_file().set_len(bytes.len() as u64).unwrap(); // a sparse tail
        for size in [
            0,
            1,
            LEAF as usize,
            3 * LEAF as usize + 5,
            bytes.len(),
            bytes.len() + 3 * LEAF as usize,
        ] {
            assert_eq!(
                content_fingerprint(f.path(), Bytes(size as u64)).unwrap(),
                reference(&bytes, size),
                "size {size}"
            );
        }
        assert_ne!(
            reference(&bytes, 100),
            reference(&bytes, 101),
            "the size counts"
        );
    }

    /// Kept leaf hashes answer exactly for whole leaves (and the short last one) and are the
    /// blake3 of those bytes.
    #[test]
    fn kept_leaves_are_the_hashes_of_exactly_those_bytes() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let size = 3 * LEAF as usize + 4096;
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
        f.write_all(&bytes).unwrap();
        let (fp, kept) = fingerprint_keeping_leaves(f.path(), Bytes(size as u64)).unwrap();
        assert_eq!(fp, reference(&bytes, size));
        let l = LEAF as usize;
        for (offset, len) in [(0, l), (l, l), (3 * l, 4096)] {
            let want = blake3::hash(&bytes[offset..offset + len]);
            assert_eq!(kept.get(offset as u64, len), Some(*want.as_bytes()));
        }
        for (offset, len) in [(0, l - 1), (4096, l), (l, 2 * l), (3 * l, 4095), (4 * l, l)] {
            assert_eq!(kept.get(offset as u64, len), None, "{offset}+{len}");
        }
    }
}
