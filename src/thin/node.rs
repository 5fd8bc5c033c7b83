//! Decoding and checking one persistent-data btree node.
//!
//! A node is one 4 KiB block: a 32-byte header (csum u32, flags u32 (1 internal, 2 leaf),
//! blocknr u64, nr_entries u32, max_entries u32, value_size u32, padding u32), then
//! `max_entries` u64 keys, then `max_entries` values of `value_size` bytes. Internal nodes'
//! values are child block numbers (u64) and `key[i]` is the lowest key under child `i`.
//! Everything here is checked before any key or value is touched, so the accessors can't
//! read outside the block.

use super::checksum;
use super::source::{le_u32, le_u64, Block, METADATA_BLOCK_SIZE};

/// Size of the node header.
pub const NODE_HEADER_SIZE: usize = 32;
const INTERNAL_NODE: u32 = 1;
const LEAF_NODE: u32 = 2;

/// Whether a node holds child pointers or the tree's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Values are child node block numbers.
    Internal,
    /// Values are the tree's values.
    Leaf,
}

/// The checked header of a node; its accessors index the node's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeHeader {
    /// Internal or leaf.
    pub kind: NodeKind,
    /// Number of entries in use.
    pub nr_entries: usize,
    /// Capacity of the key and value arrays.
    pub max_entries: usize,
    /// Size of one value in bytes.
    pub value_size: usize,
}

/// The most entries a node with `value_size`-byte values holds, as the kernel computes it
/// (a multiple of 3 so nodes split and merge evenly): 252, 168 and 126 for 8, 16 and 24 bytes.
pub fn max_entries_for(value_size: usize) -> usize {
    (METADATA_BLOCK_SIZE - NODE_HEADER_SIZE) / (8 + value_size) / 3 * 3
}

impl NodeHeader {
    /// Decode and check the node in `block`, read from block `location`, in a tree whose leaves
    /// hold `leaf_value_size`-byte values.
    ///
    /// Checks the checksum, the node's own location, the kind, the value size (8 for internal
    /// nodes), that the arrays fit in the block, that `nr_entries <= max_entries`, that internal
    /// nodes are not empty, and that keys strictly increase.
    pub fn decode(block: &Block, location: u64, leaf_value_size: usize) -> Result<Self, String> {
        checksum::verify(block, checksum::BTREE_CSUM_XOR)?;
        Self::decode_verified(block, location, leaf_value_size)
    }

    /// [`NodeHeader::decode`] without the checksum, for a block whose btree checksum has
    /// already been verified (a source's read-ahead did it, see
    /// [`super::source::NodeChecksum::Verified`]); every other check is the same.
    pub fn decode_verified(
        block: &Block,
        location: u64,
        leaf_value_size: usize,
    ) -> Result<Self, String> {
        let blocknr = le_u64(block, 8);
        if blocknr != location {
            return Err(format!("node says it lives at block {blocknr}"));
        }
        let kind = match le_u32(block, 4) {
            INTERNAL_NODE => NodeKind::Internal,
            LEAF_NODE => NodeKind::Leaf,
            other => return Err(format!("bad node flags {other:#x}")),
        };
        let nr_entries = le_u32(block, 16) as usize;
        let max_entries = le_u32(block, 20) as usize;
        let value_size = le_u32(block, 24) as usize;
        let expected_vs = match kind {
            NodeKind::Internal => 8,
            NodeKind::Leaf => leaf_value_size,
        };
        if value_size != expected_vs {
            return Err(format!(
                "{kind:?} node has value size {value_size} (expected {expected_vs})"
            ));
        }
        if max_entries == 0 || max_entries > max_entries_for(value_size) {
            return Err(format!(
                "max_entries {max_entries} does not fit {value_size}-byte values in a block \
                 (at most {})",
                max_entries_for(value_size)
            ));
        }
        if nr_entries > max_entries {
            return Err(format!(
                "nr_entries {nr_entries} exceeds max_entries {max_entries}"
            ));
        }
        if kind == NodeKind::Internal && nr_entries == 0 {
            return Err("internal node has no entries".into());
        }
        let hdr = NodeHeader {
            kind,
            nr_entries,
            max_entries,
            value_size,
        };
        for i in 1..nr_entries {
            let (prev, key) = (hdr.key(block, i - 1), hdr.key(block, i));
            if key <= prev {
                return Err(format!(
                    "keys not strictly increasing: entry {i} has key {key} after {prev}"
                ));
            }
        }
        Ok(hdr)
    }

    /// Key `i` (`i < nr_entries`).
    pub fn key(&self, block: &Block, i: usize) -> u64 {
        le_u64(block, NODE_HEADER_SIZE + 8 * i)
    }

    /// Value `i` as bytes (`i < nr_entries`).
    pub fn value<'b>(&self, block: &'b Block, i: usize) -> &'b [u8] {
        let off = NODE_HEADER_SIZE + 8 * self.max_entries + self.value_size * i;
        &block[off..off + self.value_size]
    }

    /// The first 8 bytes of value `i` as a little-endian `u64` (the whole value in mapping
    /// trees and internal nodes).
    pub fn value_u64(&self, block: &Block, i: usize) -> u64 {
        le_u64(self.value(block, i), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_max_entries() {
        assert_eq!(max_entries_for(8), 252);
        assert_eq!(max_entries_for(16), 168);
        assert_eq!(max_entries_for(24), 126);
    }
}
