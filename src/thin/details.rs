//! The device-details btree: thin device id → 24-byte details record.
//!
//! Record layout (little-endian): mapped_blocks u64 @0, transaction_id u64 @8,
//! creation_time u32 @16, snapshotted_time u32 @20. lvmsync uses it to confirm a device exists
//! (the mapping tree and the details tree must agree) and to list the ids present when a
//! requested one is missing.

use super::cursor::{Front, TreeCursor};
use super::source::{le_u32, le_u64, MetadataSource};
use super::superblock::Superblock;
use crate::error::Result;

/// Size of one details record.
pub const DETAILS_VALUE_SIZE: usize = 24;

/// What the pool records about one thin device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceDetails {
    /// Number of mapped virtual blocks.
    pub mapped_blocks: u64,
    /// Transaction id the device was last changed in.
    pub transaction_id: u64,
    /// Pool time when the device was created.
    pub creation_time: u32,
    /// Pool time of the device's last snapshot (mappings older than this are shared).
    pub snapshotted_time: u32,
}

impl DeviceDetails {
    /// Decode a 24-byte record (the cursor guarantees the length).
    fn decode(v: &[u8]) -> Self {
        DeviceDetails {
            mapped_blocks: le_u64(v, 0),
            transaction_id: le_u64(v, 8),
            creation_time: le_u32(v, 16),
            snapshotted_time: le_u32(v, 20),
        }
    }
}

/// A cursor over the details tree of the metadata described by `sb`.
fn cursor<'s>(src: &'s dyn MetadataSource, sb: &Superblock) -> TreeCursor<'s> {
    TreeCursor::new(
        src,
        "device details tree".into(),
        sb.device_details_root,
        DETAILS_VALUE_SIZE,
        sb.node_limit(src),
    )
}

/// The details of thin device `dev`, or `None` if the pool has no such device.
pub fn lookup(
    src: &dyn MetadataSource,
    sb: &Superblock,
    dev: u64,
) -> Result<Option<DeviceDetails>> {
    let mut c = cursor(src, sb);
    Ok(c.seek(dev)?.map(|_| DeviceDetails::decode(c.value_bytes())))
}

/// The ids of the first `max` thin devices in the pool, in order (for error messages).
pub fn device_ids(src: &dyn MetadataSource, sb: &Superblock, max: usize) -> Result<Vec<u64>> {
    let mut c = cursor(src, sb);
    let mut ids = Vec::new();
    while ids.len() < max {
        match c.next_entry()? {
            Front::Entry { key, .. } => ids.push(key),
            _ => break,
        }
        c.advance();
    }
    Ok(ids)
}
