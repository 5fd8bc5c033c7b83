//! The thin-pool metadata superblock (block 0, or the held copy of a metadata snapshot).
//!
//! Layout (all little-endian): csum u32 @0, flags u32 @4, blocknr u64 @8, uuid @16,
//! magic u64 @32, version u32 @40, time u32 @44, transaction id u64 @48, held root u64 @56,
//! space-map roots @64/@192, data mapping root u64 @320, device details root u64 @328,
//! data block size u32 @336 (sectors), metadata block size u32 @340 (sectors, always 8),
//! metadata block count u64 @344, compat / compat_ro / incompat flags u32 @352/@356/@360.

use super::checksum;
use super::source::{le_u32, le_u64, Block, MetadataSource};
use crate::error::{Error, Result};
use crate::units::{Bytes, Sectors};

/// The superblock magic number, 27022010.
pub const THIN_MAGIC: u64 = 27_022_010;
/// Superblock flag bit 0 (metadata version 2): the kernel hit an error on this metadata and
/// wants it checked before the pool is used again.
pub const NEEDS_CHECK: u32 = 1;
/// Largest data block size the kernel accepts: 1 GiB, in sectors.
const MAX_DATA_BLOCK_SECTORS: u32 = 2_097_152;

/// The decoded, checked fields of a thin-pool superblock that lvmsync uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Block number the superblock was read from (its own `blocknr` field matches it).
    pub location: u64,
    /// Flag bits; bit 0 is NEEDS_CHECK (the kernel saw an error; run `thin_check`).
    pub flags: u32,
    /// Metadata format version, 1 or 2 (2 only adds the NEEDS_CHECK flag).
    pub version: u32,
    /// The pool's current snapshot time counter.
    pub time: u32,
    /// Transaction id of the last commit.
    pub transaction_id: u64,
    /// Block of the held metadata snapshot's superblock copy, 0 when none is held.
    pub held_root: u64,
    /// Root of the two-level mapping tree (device id → virtual block → data block + time).
    pub data_mapping_root: u64,
    /// Root of the device-details tree (device id → mapped blocks, times, transaction).
    pub device_details_root: u64,
    /// Size of one data block.
    pub data_block_size: Sectors,
    /// Number of metadata blocks the pool's metadata space map covers.
    pub metadata_nr_blocks: u64,
}

impl Superblock {
    /// Decode and check the superblock in `block`, read from block `location`.
    ///
    /// Checks the salted checksum, the magic, the version (1 or 2), the block's own location,
    /// the metadata block size, the data block size and that no incompatible feature flag is
    /// set (the kernel itself supports none).
    pub fn decode(block: &Block, location: u64) -> Result<Self, String> {
        let magic = le_u64(block, 32);
        if magic != THIN_MAGIC {
            return Err(format!(
                "bad superblock magic {magic} at block {location} (expected {THIN_MAGIC}): \
                 not thin-pool metadata"
            ));
        }
        checksum::verify(block, checksum::SUPERBLOCK_CSUM_XOR)
            .map_err(|e| format!("superblock at block {location}: {e}"))?;
        let blocknr = le_u64(block, 8);
        if blocknr != location {
            return Err(format!(
                "superblock at block {location} says it lives at block {blocknr}"
            ));
        }
        let version = le_u32(block, 40);
        if !(1..=2).contains(&version) {
            return Err(format!(
                "unsupported metadata version {version} (lvmsync reads versions 1 and 2)"
            ));
        }
        let incompat = le_u32(block, 360);
        if incompat != 0 {
            return Err(format!(
                "unknown incompatible feature flags {incompat:#x}; this metadata is newer than \
                 lvmsync understands"
            ));
        }
        let metadata_block_size = le_u32(block, 340);
        if metadata_block_size != 8 {
            return Err(format!(
                "metadata block size is {metadata_block_size} sectors (only 8 = 4 KiB exists)"
            ));
        }
        let data_block_size = le_u32(block, 336);
        if data_block_size == 0 || data_block_size > MAX_DATA_BLOCK_SECTORS {
            return Err(format!(
                "data block size of {data_block_size} sectors is out of range \
                 (1..={MAX_DATA_BLOCK_SECTORS})"
            ));
        }
        Ok(Superblock {
            location,
            flags: le_u32(block, 4),
            version,
            time: le_u32(block, 44),
            transaction_id: le_u64(block, 48),
            held_root: le_u64(block, 56),
            data_mapping_root: le_u64(block, 320),
            device_details_root: le_u64(block, 328),
            data_block_size: Sectors(u64::from(data_block_size)),
            metadata_nr_blocks: le_u64(block, 344),
        })
    }

    /// Read and check the superblock at block `location` of `src` (0 for the live one, the held
    /// root for a metadata snapshot). Metadata flagged NEEDS_CHECK is refused: the kernel saw
    /// an error on it, so its mappings can't be trusted to name the changed blocks.
    pub fn read(src: &dyn MetadataSource, location: u64) -> Result<Self> {
        let mut block = [0u8; super::source::METADATA_BLOCK_SIZE];
        src.read_block(location, &mut block)?;
        let sb = Superblock::decode(&block, location).map_err(|detail| Error::Corrupt {
            source_name: src.name().to_string(),
            what: "thin-pool metadata",
            detail: format!("{detail}; check the pool with thin_check, or run a full sync"),
        })?;
        if sb.flags & NEEDS_CHECK != 0 {
            return Err(Error::Unusable {
                source_name: src.name().to_string(),
                reason: format!(
                    "the thin-pool metadata is flagged NEEDS_CHECK (superblock at block \
                     {location}): the kernel hit an error on it and its mappings can't be \
                     trusted. Deactivate the pool and repair it (`lvconvert --repair VG/POOL`, \
                     or thin_check and thin_repair on a plain dm pool), then run a full sync"
                ),
            });
        }
        Ok(sb)
    }

    /// The superblock copy of the metadata snapshot held in `src` (what `thin_delta -m`
    /// reads): the pool's state when `reserve_metadata_snap` was sent, consistent while the
    /// live superblock moves on. An error when block 0 records no held snapshot.
    pub fn read_held(src: &dyn MetadataSource) -> Result<Self> {
        let live = Superblock::read(src, 0)?;
        if live.held_root == 0 {
            return Err(Error::Unusable {
                source_name: src.name().to_string(),
                reason: "holds no metadata snapshot (held root 0); take one with `dmsetup \
                         message POOL 0 reserve_metadata_snap` before copying the metadata, or \
                         drop --metadata-snap to read the live roots"
                    .into(),
            });
        }
        Superblock::read(src, live.held_root)
    }

    /// The data block size in bytes (the granularity of every thin change set).
    pub fn data_block_bytes(&self) -> Bytes {
        // At most 2^21 sectors (checked in decode), so this can't overflow.
        Bytes(self.data_block_size.0 * crate::units::SECTOR_SIZE)
    }

    /// The number of blocks a btree node may live in: the smaller of the source's size and the
    /// metadata space map's size (a node past either is corrupt).
    pub fn node_limit(&self, src: &dyn MetadataSource) -> u64 {
        src.nr_blocks().min(self.metadata_nr_blocks)
    }
}
