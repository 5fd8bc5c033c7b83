//! Unit newtypes.
//!
//! Device-mapper speaks sectors (512 B), the COW store speaks chunks, thin metadata speaks
//! data blocks and 4 KiB metadata blocks, and users speak bytes. Each is its own type with
//! named conversions, so mixing them up is a compile error rather than silent corruption.

use serde::{Deserialize, Serialize};

/// The size of a device-mapper sector in bytes.
pub const SECTOR_SIZE: u64 = 512;

/// A count or offset in bytes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

/// A count or offset in 512-byte sectors.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Sectors(pub u64);

impl Sectors {
    /// The same length in bytes; `None` on overflow (only possible with untrusted input).
    pub fn to_bytes(self) -> Option<Bytes> {
        self.0.checked_mul(SECTOR_SIZE).map(Bytes)
    }
}

impl Bytes {
    /// Length of an open file or block device. Seeking to the end is the one way that works
    /// for both: `metadata().len()` is 0 for a block device. Leaves the file offset at the end.
    pub fn len_of(mut file: &std::fs::File) -> std::io::Result<Bytes> {
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map(Bytes)
    }

    /// The same length in whole sectors, or `None` if it is not a multiple of 512.
    pub fn to_sectors(self) -> Option<Sectors> {
        (self.0 % SECTOR_SIZE == 0).then_some(Sectors(self.0 / SECTOR_SIZE))
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for Sectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_byte_round_trip() {
        assert_eq!(Sectors(8).to_bytes(), Some(Bytes(4096)));
        assert_eq!(Bytes(4096).to_sectors(), Some(Sectors(8)));
        assert_eq!(Bytes(4097).to_sectors(), None);
        assert_eq!(Sectors(u64::MAX).to_bytes(), None);
    }
}
