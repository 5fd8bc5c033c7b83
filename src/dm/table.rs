//! Typed device-mapper table lines (the `dmsetup table` parameters of one target).
//!
//! Only the targets lvmsync reasons about get their own variant; anything else is kept as
//! [`Target::Other`] so a device with an unfamiliar table still probes as "plain". Parsing is
//! pure (strings in, structs out) so every shape is tested on the host.

use crate::error::{Error, Result};
use crate::units::Sectors;
use serde::{Serialize, Serializer};

/// A block device number `major:minor`, as dm tables name their underlying devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl Serialize for DevNum {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for DevNum {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let parse = |v: &str| v.parse::<u32>().ok();
        match s.split_once(':') {
            Some((ma, mi)) => match (parse(ma), parse(mi)) {
                (Some(major), Some(minor)) => Ok(DevNum { major, minor }),
                _ => Err(bad("device number", s)),
            },
            None => Err(bad("device number", s)),
        }
    }
}

/// How a classic snapshot keeps its exception store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotStore {
    /// `P`: persistent store on the COW device (what LVM creates; what lvmsync can read).
    Persistent,
    /// `PO`: persistent, with overflow support.
    PersistentOverflow,
    /// `N`: transient, kept in memory only (no store to read).
    Transient,
}

/// One target of a dm table, with its parameters typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Target {
    /// `linear <dev> <offset>`.
    Linear {
        /// Underlying device.
        device: DevNum,
        /// Start on it, in sectors.
        offset: Sectors,
    },
    /// `snapshot <origin> <cow> <P|PO|N> <chunk> [features]` (also `snapshot-merge`).
    Snapshot {
        /// The origin's hidden `-real` device.
        origin: DevNum,
        /// The exception store (`-cow`) device.
        cow: DevNum,
        /// Store kind.
        store: SnapshotStore,
        /// Chunk size in sectors.
        chunk_size: Sectors,
        /// True for `snapshot-merge` (the snapshot is being merged back into its origin).
        merging: bool,
    },
    /// `snapshot-origin <real dev>`: the origin LV once it has classic snapshots.
    SnapshotOrigin {
        /// The hidden `-real` device holding the data.
        real: DevNum,
    },
    /// `thin-pool <metadata> <data> <block size> <low water mark> [features]`.
    ThinPool {
        /// Metadata device (`_tmeta`).
        metadata: DevNum,
        /// Data device (`_tdata`).
        data: DevNum,
        /// Data block size in sectors.
        block_size: Sectors,
        /// Low water mark, in data blocks.
        low_water_mark: u64,
        /// Feature arguments (`skip_block_zeroing`, `read_only`, ...).
        features: Vec<String>,
    },
    /// `thin <pool> <dev id> [<external origin>]`.
    Thin {
        /// The pool device (`-tpool`).
        pool: DevNum,
        /// The thin device id inside the pool's metadata.
        dev_id: u64,
        /// External origin device, if any.
        external_origin: Option<DevNum>,
    },
    /// Any other target (`striped`, `crypt`, `error`, ...), kept verbatim.
    Other {
        /// The target type name.
        target_type: String,
        /// Its parameters, unparsed.
        params: String,
    },
}

/// A table line: where the target sits in the device, and the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableLine {
    /// First sector of the device this target covers.
    pub start: Sectors,
    /// Number of sectors it covers.
    pub length: Sectors,
    /// The target and its parameters.
    pub target: Target,
}

impl Target {
    /// Parse the parameters of one target of type `target_type`.
    pub fn parse(target_type: &str, params: &str) -> Result<Target> {
        let f: Vec<&str> = params.split_whitespace().collect();
        let at = |i: usize| f.get(i).copied().ok_or_else(|| bad(target_type, params));
        let num = |i: usize| at(i)?.parse::<u64>().map_err(|_| bad(target_type, params));
        let dev = |i: usize| {
            at(i)?
                .parse::<DevNum>()
                .map_err(|_| bad(target_type, params))
        };
        Ok(match target_type {
            "linear" => Target::Linear {
                device: dev(0)?,
                offset: Sectors(num(1)?),
            },
            "snapshot" | "snapshot-merge" => Target::Snapshot {
                origin: dev(0)?,
                cow: dev(1)?,
                store: match at(2)?.to_ascii_uppercase().as_str() {
                    "P" => SnapshotStore::Persistent,
                    "PO" => SnapshotStore::PersistentOverflow,
                    "N" => SnapshotStore::Transient,
                    _ => return Err(bad(target_type, params)),
                },
                chunk_size: Sectors(num(3)?),
                merging: target_type == "snapshot-merge",
            },
            "snapshot-origin" => Target::SnapshotOrigin { real: dev(0)? },
            "thin-pool" => Target::ThinPool {
                metadata: dev(0)?,
                data: dev(1)?,
                block_size: Sectors(num(2)?),
                low_water_mark: num(3)?,
                features: feature_args(&f[4.min(f.len())..])
                    .ok_or_else(|| bad(target_type, params))?,
            },
            "thin" => Target::Thin {
                pool: dev(0)?,
                dev_id: num(1)?,
                external_origin: f.get(2).map(|s| s.parse()).transpose()?,
            },
            other => Target::Other {
                target_type: other.to_string(),
                params: params.to_string(),
            },
        })
    }

    /// The dm target type name (`linear`, `snapshot`, `thin-pool`, ...).
    pub fn type_name(&self) -> &str {
        match self {
            Target::Linear { .. } => "linear",
            Target::Snapshot { merging: false, .. } => "snapshot",
            Target::Snapshot { merging: true, .. } => "snapshot-merge",
            Target::SnapshotOrigin { .. } => "snapshot-origin",
            Target::ThinPool { .. } => "thin-pool",
            Target::Thin { .. } => "thin",
            Target::Other { target_type, .. } => target_type,
        }
    }
}

/// `<count> <arg>...` feature arguments; `None` if the count does not match.
fn feature_args(f: &[&str]) -> Option<Vec<String>> {
    let Some((count, args)) = f.split_first() else {
        return Some(Vec::new());
    };
    let n: usize = count.parse().ok()?;
    (n == args.len()).then(|| args.iter().map(|s| s.to_string()).collect())
}

fn bad(what: &str, text: &str) -> Error {
    Error::Corrupt {
        source_name: "device-mapper".into(),
        what: "table line",
        detail: format!("cannot parse {what} parameters '{text}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(major: u32, minor: u32) -> DevNum {
        DevNum { major, minor }
    }

    #[test]
    fn parses_lvm_tables() {
        assert_eq!(
            Target::parse("snapshot", "253:1 253:2 P 8").unwrap(),
            Target::Snapshot {
                origin: d(253, 1),
                cow: d(253, 2),
                store: SnapshotStore::Persistent,
                chunk_size: Sectors(8),
                merging: false
            }
        );
        assert_eq!(
            Target::parse("snapshot-origin", "253:1").unwrap(),
            Target::SnapshotOrigin { real: d(253, 1) }
        );
        assert_eq!(
            Target::parse("thin-pool", "253:4 253:5 128 0 1 skip_block_zeroing").unwrap(),
            Target::ThinPool {
                metadata: d(253, 4),
                data: d(253, 5),
                block_size: Sectors(128),
                low_water_mark: 0,
                features: vec!["skip_block_zeroing".into()]
            }
        );
        assert_eq!(
            Target::parse("thin-pool", "253:4 253:5 128 0 0")
                .unwrap()
                .type_name(),
            "thin-pool"
        );
        assert_eq!(
            Target::parse("thin", "253:6 2").unwrap(),
            Target::Thin {
                pool: d(253, 6),
                dev_id: 2,
                external_origin: None
            }
        );
        assert_eq!(
            Target::parse("linear", "7:0 2048").unwrap(),
            Target::Linear {
                device: d(7, 0),
                offset: Sectors(2048)
            }
        );
        assert!(matches!(
            Target::parse("snapshot-merge", "253:1 253:2 PO 16").unwrap(),
            Target::Snapshot {
                merging: true,
                store: SnapshotStore::PersistentOverflow,
                ..
            }
        ));
        assert_eq!(
            Target::parse("striped", "2 128 7:0 0 7:1 0")
                .unwrap()
                .type_name(),
            "striped"
        );
    }

    #[test]
    fn rejects_malformed_tables() {
        for (t, p) in [
            ("snapshot", "253:1 253:2 X 8"),
            ("snapshot", "253:1"),
            ("thin", "253:6"),
            ("thin", "253 2"),
            ("linear", "7:0 -1"),
            ("thin-pool", "253:4 253:5 128 0 2 one"),
            ("thin-pool", "253:4 253:5 128"),
            ("snapshot-origin", "x:y"),
        ] {
            assert!(Target::parse(t, p).is_err(), "{t} {p}");
        }
    }

    proptest::proptest! {
        /// Any parameter text gives a target or an error, never a panic.
        #[test]
        fn never_panics(ty in "linear|snapshot|snapshot-merge|snapshot-origin|thin-pool|thin|x",
                        params in "[0-9: PNO-]{0,40}") {
            let _ = Target::parse(&ty, &params);
        }
    }
}
