//! Typed device-mapper status lines of the targets lvmsync reads (`dmsetup status`).
//!
//! The thin-pool status carries the *held metadata root*: the block of the metadata snapshot
//! reserved with `reserve_metadata_snap`, which is where a live pool's mappings are read from.
//! Parsing is pure and tested on the host.

use crate::error::{Error, Result};
use crate::units::Sectors;
use serde::Serialize;

/// Status of a classic `snapshot` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SnapshotStatus {
    /// Working: `<allocated>/<total> <metadata>` sectors of the COW device.
    Valid {
        /// Sectors of the COW device in use (data and metadata).
        allocated: Sectors,
        /// Size of the COW device.
        total: Sectors,
        /// Sectors used by metadata (header and exception areas).
        metadata: Sectors,
    },
    /// `Invalid`: the snapshot was dropped (typically it ran out of space).
    Invalid,
    /// `Overflow`: the COW device filled up.
    Overflow,
    /// `Merge failed`.
    MergeFailed,
    /// `Unknown`.
    Unknown,
}

/// Mode of a thin pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// Read-write.
    Rw,
    /// Read-only (metadata problem or by request).
    Ro,
    /// Out of data space: writes that need new blocks queue or fail.
    OutOfDataSpace,
}

/// Status of a `thin-pool` target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ThinPoolStatus {
    /// Working pool.
    Working {
        /// Transaction id (LVM bumps it with every thin LV change).
        transaction_id: u64,
        /// Used metadata blocks (4 KiB each).
        used_metadata_blocks: u64,
        /// Total metadata blocks.
        total_metadata_blocks: u64,
        /// Used data blocks.
        used_data_blocks: u64,
        /// Total data blocks.
        total_data_blocks: u64,
        /// Metadata block of the reserved metadata snapshot, if one is held (`-` = none).
        held_metadata_root: Option<u64>,
        /// Pool mode.
        mode: PoolMode,
        /// The pool's metadata needs `thin_check` before further use.
        needs_check: bool,
    },
    /// `Fail`: the pool has failed.
    Fail,
    /// `Error`: the status could not be read.
    Error,
}

/// Status of a `thin` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ThinStatus {
    /// Working thin device.
    Working {
        /// Sectors mapped.
        mapped: Sectors,
        /// Highest mapped sector, if anything is mapped.
        highest_mapped: Option<Sectors>,
    },
    /// `Fail`.
    Fail,
}

impl SnapshotStatus {
    /// Parse a `snapshot` status line.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        Ok(match s {
            "Invalid" => SnapshotStatus::Invalid,
            "Overflow" => SnapshotStatus::Overflow,
            "Merge failed" => SnapshotStatus::MergeFailed,
            "Unknown" => SnapshotStatus::Unknown,
            _ => {
                let f: Vec<&str> = s.split_whitespace().collect();
                let (used, total) = f
                    .first()
                    .and_then(|x| x.split_once('/'))
                    .ok_or_else(|| bad("snapshot", s))?;
                SnapshotStatus::Valid {
                    allocated: Sectors(number("snapshot", s, used)?),
                    total: Sectors(number("snapshot", s, total)?),
                    metadata: Sectors(number("snapshot", s, f.get(1).copied().unwrap_or(""))?),
                }
            }
        })
    }
}

impl ThinPoolStatus {
    /// Parse a `thin-pool` status line.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "Fail" => return Ok(ThinPoolStatus::Fail),
            "Error" => return Ok(ThinPoolStatus::Error),
            _ => {}
        }
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() < 5 {
            return Err(bad("thin-pool", s));
        }
        let n = |v: &str| number("thin-pool", s, v);
        let pair = |v: &str| -> Result<(u64, u64)> {
            let (a, b) = v.split_once('/').ok_or_else(|| bad("thin-pool", s))?;
            Ok((n(a)?, n(b)?))
        };
        let (used_meta, total_meta) = pair(f[1])?;
        let (used_data, total_data) = pair(f[2])?;
        Ok(ThinPoolStatus::Working {
            transaction_id: n(f[0])?,
            used_metadata_blocks: used_meta,
            total_metadata_blocks: total_meta,
            used_data_blocks: used_data,
            total_data_blocks: total_data,
            held_metadata_root: match f[3] {
                "-" => None,
                root => Some(n(root)?),
            },
            mode: match f.get(4).copied() {
                Some("rw") => PoolMode::Rw,
                Some("ro") => PoolMode::Ro,
                Some("out_of_data_space") => PoolMode::OutOfDataSpace,
                _ => return Err(bad("thin-pool", s)),
            },
            needs_check: f.contains(&"needs_check"),
        })
    }
}

impl ThinStatus {
    /// Parse a `thin` status line.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s == "Fail" {
            return Ok(ThinStatus::Fail);
        }
        let f: Vec<&str> = s.split_whitespace().collect();
        let (mapped, highest) = match f.as_slice() {
            [m, h] => (m, h),
            _ => return Err(bad("thin", s)),
        };
        Ok(ThinStatus::Working {
            mapped: Sectors(number("thin", s, mapped)?),
            highest_mapped: match *highest {
                "-" => None,
                h => Some(Sectors(number("thin", s, h)?)),
            },
        })
    }
}

fn number(target: &str, line: &str, field: &str) -> Result<u64> {
    field.parse().map_err(|_| bad(target, line))
}

fn bad(target: &str, line: &str) -> Error {
    Error::Corrupt {
        source_name: "device-mapper".into(),
        what: "status line",
        detail: format!("cannot parse {target} status '{line}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snapshot_status() {
        assert_eq!(
            SnapshotStatus::parse("16/32768 16").unwrap(),
            SnapshotStatus::Valid {
                allocated: Sectors(16),
                total: Sectors(32768),
                metadata: Sectors(16)
            }
        );
        assert_eq!(
            SnapshotStatus::parse("Invalid").unwrap(),
            SnapshotStatus::Invalid
        );
        assert_eq!(
            SnapshotStatus::parse("Merge failed").unwrap(),
            SnapshotStatus::MergeFailed
        );
        assert!(SnapshotStatus::parse("16 32768").is_err());
        assert!(SnapshotStatus::parse("16/x 1").is_err());
    }

    #[test]
    fn parses_thin_pool_status_and_held_root() {
        let line = "2 113/1024 0/2048 19 rw no_discard_passdown queue_if_no_space - 1024";
        match ThinPoolStatus::parse(line).unwrap() {
            ThinPoolStatus::Working {
                transaction_id,
                held_metadata_root,
                mode,
                needs_check,
                used_metadata_blocks,
                total_data_blocks,
                ..
            } => {
                assert_eq!(
                    (transaction_id, held_metadata_root, mode, needs_check),
                    (2, Some(19), PoolMode::Rw, false)
                );
                assert_eq!((used_metadata_blocks, total_data_blocks), (113, 2048));
            }
            other => panic!("{other:?}"),
        }
        let none = ThinPoolStatus::parse(
            "2 112/1024 0/2048 - ro discard_passdown error_if_no_space needs_check 1024",
        )
        .unwrap();
        assert!(matches!(
            none,
            ThinPoolStatus::Working {
                held_metadata_root: None,
                mode: PoolMode::Ro,
                needs_check: true,
                ..
            }
        ));
        assert_eq!(ThinPoolStatus::parse("Fail").unwrap(), ThinPoolStatus::Fail);
        assert!(ThinPoolStatus::parse("2 113/1024 0/2048").is_err());
        assert!(ThinPoolStatus::parse("2 113-1024 0/2048 - rw").is_err());
    }

    #[test]
    fn parses_thin_status() {
        assert_eq!(
            ThinStatus::parse("2048 4095").unwrap(),
            ThinStatus::Working {
                mapped: Sectors(2048),
                highest_mapped: Some(Sectors(4095))
            }
        );
        assert_eq!(
            ThinStatus::parse("0 -").unwrap(),
            ThinStatus::Working {
                mapped: Sectors(0),
                highest_mapped: None
            }
        );
        assert_eq!(ThinStatus::parse("Fail").unwrap(), ThinStatus::Fail);
        assert!(ThinStatus::parse("12").is_err());
    }

    proptest::proptest! {
        /// Any status text gives a status or an error, never a panic.
        #[test]
        fn never_panic(line in "[0-9/ a-z_-]{0,60}") {
            let _ = SnapshotStatus::parse(&line);
            let _ = ThinPoolStatus::parse(&line);
            let _ = ThinStatus::parse(&line);
        }
    }
}
