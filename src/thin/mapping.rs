//! The two-level mapping tree: device id → (virtual block → data block + time).
//!
//! The top level maps each thin device id to the root block of that device's own tree; the
//! device tree maps virtual block numbers to a packed `u64` "block_time": the data block in
//! the upper 40 bits, the pool time of the mapping in the lower 24.

use super::cursor::TreeCursor;
use super::details;
use super::source::MetadataSource;
use super::superblock::Superblock;
use crate::error::{Error, Result};

/// Value size of both levels of the mapping tree.
pub const MAPPING_VALUE_SIZE: usize = 8;

/// One decoded mapping value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTime {
    /// The data block (in the pool's data device) the virtual block maps to.
    pub data_block: u64,
    /// The pool time the mapping was made at.
    pub time: u32,
}

impl BlockTime {
    /// Unpack a mapping tree value.
    pub fn from_raw(v: u64) -> Self {
        BlockTime {
            data_block: v >> 24,
            time: (v & 0xFF_FFFF) as u32,
        }
    }
}

/// A cursor over the mapping tree of thin device `dev`, after checking that the device exists
/// in both the mapping and the details tree.
pub fn device_tree<'s>(
    src: &'s dyn MetadataSource,
    sb: &Superblock,
    dev: u64,
) -> Result<TreeCursor<'s>> {
    let limit = sb.node_limit(src);
    let mut top = TreeCursor::new(
        src,
        "top-level mapping tree".into(),
        sb.data_mapping_root,
        MAPPING_VALUE_SIZE,
        limit,
    );
    let root = top.seek(dev)?;
    let in_details = details::lookup(src, sb, dev)?.is_some();
    match (root, in_details) {
        (Some(root), true) => Ok(TreeCursor::new(
            src,
            format!("mapping tree of thin device {dev}"),
            root,
            MAPPING_VALUE_SIZE,
            limit,
        )),
        (None, false) => {
            const SHOWN: usize = 20;
            let ids = details::device_ids(src, sb, SHOWN + 1)?;
            let mut list: Vec<String> = ids.iter().take(SHOWN).map(u64::to_string).collect();
            if ids.len() > SHOWN {
                list.push("...".into());
            }
            let present = if list.is_empty() {
                "the pool has no thin devices".to_string()
            } else {
                format!("devices present: {}", list.join(", "))
            };
            Err(Error::InvalidArgument(format!(
                "{}: no thin device with id {dev} ({present}); `lvs -o +thin_id` shows the ids",
                src.name()
            )))
        }
        (root, _) => Err(Error::Corrupt {
            source_name: src.name().to_string(),
            what: "thin-pool metadata",
            detail: format!(
                "thin device {dev} is {} the mapping tree but {} the details tree; check the \
                 pool with thin_check, or run a full sync",
                if root.is_some() { "in" } else { "not in" },
                if in_details { "in" } else { "not in" },
            ),
        }),
    }
}
