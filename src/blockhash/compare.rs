//! The one-pass compare of two local inputs: the blocks that differ, found by comparing bytes
//! (no hashing), and, from the same read, both inputs' content fingerprints.
//!
//! Per segment, equality is decided per unit of `min(block size, leaf)`: two holes are equal
//! unread, a hole against data is equal when the data is all zero, data against data by
//! `memcmp`. A block differs when any of its units does. For the fingerprints every leaf of
//! each input is hashed, except that a leaf equal in both is hashed once, and a hole or
//! all-zero leaf gets the zero-leaf hash unhashed: a `send --base` of a fresh image against an
//! all-zero sparse one hashes only the new image, once.

use super::walker::{hash_range, walk_segments, Input, Segment, SEGMENT};
use super::BlockExtents;
use crate::error::Result;
use crate::stream::encode::is_zero;
use crate::stream::fingerprint::{Fingerprinter, LeafHashes, LEAF};
use crate::stream::Fingerprint;
use crate::units::Bytes;
use crate::ChangeSet;
use std::sync::OnceLock;

/// What one compare pass found.
#[derive(Debug)]
pub struct Compared {
    /// Differing blocks as `changed` extents, plus the longer input's tail.
    pub changes: ChangeSet,
    /// Length of the old input.
    pub old_len: Bytes,
    /// Length of the new input.
    pub new_len: Bytes,
    /// Content fingerprints of the old and the new input over their whole lengths, when asked.
    pub fingerprints: Option<(Fingerprint, Fingerprint)>,
    /// The new input's leaf hashes behind its fingerprint (none kept unless fingerprinting),
    /// for the encoder to reuse as record hashes.
    pub new_leaves: LeafHashes,
}

/// One segment's findings.
struct Found {
    /// Indices of the blocks that differ.
    changed: Vec<u64>,
    /// Leaf hashes of the old and the new input (empty unless fingerprinting).
    leaves: [Vec<blake3::Hash>; 2],
}

/// Whether `from..to` (segment-relative) of the old (input 0) and new (input 1) bytes are equal.
fn equal(seg: &Segment, from: usize, to: usize) -> bool {
    match (seg.is_hole(0, from, to), seg.is_hole(1, from, to)) {
        (true, true) => true,
        (true, false) => is_zero(seg.bytes(1, from, to)),
        (false, true) => is_zero(seg.bytes(0, from, to)),
        (false, false) => seg.bytes(0, from, to) == seg.bytes(1, from, to),
    }
}

/// Compare `old` and `new` (already opened) block by block; with `fingerprints`, also
/// fingerprint both over their whole lengths in the same pass.
pub fn compare_inputs(
    inputs: &[Input; 2],
    block_size: Bytes,
    fingerprints: bool,
) -> Result<Compared> {
    let (old_len, new_len) = (inputs[0].len, inputs[1].len);
    let common = old_len.min(new_len);
    let len = if fingerprints {
        old_len.max(new_len)
    } else {
        common
    };
    let bs = block_size.0 as usize;
    let unit = bs.min(LEAF as usize);
    // A multiple of both the block size and the leaf (both powers of two).
    let seg_len = SEGMENT.max(block_size.0);
    let zero = OnceLock::new();
    let work = |seg: &Segment| -> Found {
        let within = |l: u64| l.saturating_sub(seg.offset).min(seg.len as u64) as usize;
        let seg_common = within(common);
        let eq: Vec<bool> = (0..seg_common)
            .step_by(unit)
            .map(|from| equal(seg, from, (from + unit).min(seg_common)))
            .collect();
        let all_equal =
            |from: usize, to: usize| eq[from / unit..to.div_ceil(unit)].iter().all(|&e| e);
        let changed = (0..seg_common)
            .step_by(bs)
            .filter(|&from| !all_equal(from, (from + bs).min(seg_common)))
            .map(|from| (seg.offset + from as u64) / block_size.0)
            .collect();
        let mut leaves = [Vec::new(), Vec::new()];
        if fingerprints {
            let (old_end, new_end) = (within(old_len), within(new_len));
            for from in (0..seg.len).step_by(LEAF as usize) {
                let leaf = |end: usize| (from, (from + LEAF as usize).min(end));
                let new_hash = (from < new_end)
                    .then(|| hash_range(seg, 1, leaf(new_end), LEAF as usize, &zero));
                if let Some(h) = new_hash {
                    leaves[1].push(h);
                }
                if from < old_end {
                    let (_, to) = leaf(old_end);
                    let same =
                        leaf(new_end) == (from, to) && to <= seg_common && all_equal(from, to);
                    leaves[0].push(match new_hash {
                        Some(h) if same => h,
                        _ => hash_range(seg, 0, (from, to), LEAF as usize, &zero),
                    });
                }
            }
        }
        Found { changed, leaves }
    };
    let mut found = BlockExtents::new(block_size, Bytes(common));
    let mut fps = [
        Fingerprinter::new(Bytes(old_len)),
        Fingerprinter::new(Bytes(new_len)),
    ];
    let mut new_leaves = LeafHashes::new(Bytes(new_len));
    walk_segments(inputs, len, seg_len, work, |_, f| {
        for block in f.changed {
            found.push_block(block);
        }
        for (fp, leaves) in fps.iter_mut().zip(&f.leaves) {
            for h in leaves {
                fp.push(h);
            }
        }
        for h in &f.leaves[1] {
            new_leaves.push(h);
        }
    })?;
    Ok(Compared {
        changes: found.finish(Bytes(old_len), Bytes(new_len))?,
        old_len: Bytes(old_len),
        new_len: Bytes(new_len),
        fingerprints: fingerprints.then(|| (fps[0].finish(), fps[1].finish())),
        new_leaves,
    })
}
