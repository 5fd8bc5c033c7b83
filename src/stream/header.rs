//! The stream header: what the delta is of, what it applies to, and what it leads to.

use super::frame::{put_string, Cursor};
use crate::units::Bytes;

/// A 32-byte blake3-based identity of one state of a device (see [`super::fingerprint`]).
///
/// All zeroes ([`Fingerprint::NONE`]) means "no state": the base of a full sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The base of a full sync: applies to any destination.
    pub const NONE: Fingerprint = Fingerprint([0; 32]);

    /// True for [`Fingerprint::NONE`].
    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Lowercase hex, as shown to users and stored in state files.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_none() {
            f.write_str("none")
        } else {
            f.write_str(&self.to_hex())
        }
    }
}

/// Largest block size a header may declare (the granularity the source tracked changes at).
pub const MAX_BLOCK_SIZE: u32 = 1 << 30;

/// The decoded stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Where the data came from: an image path or `vg/lv` name.
    pub source: String,
    /// The source's UUIDs (`VG-UUID/LV-UUID` for LVM), empty for image files.
    pub source_uuid: String,
    /// Size of the source device: the destination must be at least this large.
    pub device_size: Bytes,
    /// Size of the base state (what [`Header::base`] was computed over); 0 for full syncs.
    pub base_size: Bytes,
    /// Granularity the change source tracked changes at.
    pub block_size: Bytes,
    /// Identity of the state this delta applies to ([`Fingerprint::NONE`] for a full sync).
    pub base: Fingerprint,
    /// Identity of the state the destination holds after applying this delta.
    pub target: Fingerprint,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Destination bytes the stream overwrites (data + zero + discard), an upper bound on the
    /// undo journal's size, checked against free space before anything is written.
    pub touched_bytes: Bytes,
}

impl Header {
    /// True when the stream rewrites the whole device and so needs no base.
    pub fn is_full(&self) -> bool {
        self.base.is_none()
    }

    /// The header frame's payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.source.len() + self.source_uuid.len());
        put_string(&mut out, &self.source);
        put_string(&mut out, &self.source_uuid);
        out.extend_from_slice(&self.device_size.0.to_le_bytes());
        out.extend_from_slice(&self.base_size.0.to_le_bytes());
        out.extend_from_slice(&(self.block_size.0 as u32).to_le_bytes());
        out.extend_from_slice(&self.base.0);
        out.extend_from_slice(&self.target.0);
        out.extend_from_slice(&self.created_unix.to_le_bytes());
        out.extend_from_slice(&self.touched_bytes.0.to_le_bytes());
        out
    }

    /// Decode a header payload; `Err` says which field is bad.
    pub fn decode(payload: &[u8]) -> Result<Header, String> {
        let mut c = Cursor::new(payload);
        let short = || "header is too short".to_string();
        let source = c
            .string()
            .ok_or("header source name is truncated or not UTF-8")?;
        let source_uuid = c
            .string()
            .ok_or("header source UUID is truncated or not UTF-8")?;
        let device_size = c.u64().ok_or_else(short)?;
        let base_size = c.u64().ok_or_else(short)?;
        let block_size = c.u32().ok_or_else(short)?;
        let base = Fingerprint(c.hash().ok_or_else(short)?);
        let target = Fingerprint(c.hash().ok_or_else(short)?);
        let created_unix = c.u64().ok_or_else(short)?;
        let touched_bytes = c.u64().ok_or_else(short)?;
        if !c.is_done() {
            return Err("header has trailing bytes".into());
        }
        if block_size == 0 || block_size > MAX_BLOCK_SIZE || !block_size.is_power_of_two() {
            return Err(format!(
                "header block size {block_size} is not a power of two up to 1 GiB"
            ));
        }
        if touched_bytes > device_size {
            return Err(format!(
                "header claims {touched_bytes} touched bytes on a {device_size}-byte device"
            ));
        }
        Ok(Header {
            source,
            source_uuid,
            device_size: Bytes(device_size),
            base_size: Bytes(base_size),
            block_size: Bytes(block_size as u64),
            base,
            target,
            created_unix,
            touched_bytes: Bytes(touched_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_hex() {
        let h = Header {
            source: "vg0/data".into(),
            source_uuid: "abc/def".into(),
            device_size: Bytes(1 << 30),
            base_size: Bytes(1 << 30),
            block_size: Bytes(65536),
            base: Fingerprint([7; 32]),
            target: Fingerprint([9; 32]),
            created_unix: 1_700_000_000,
            touched_bytes: Bytes(4096),
        };
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let hex = h.base.to_hex();
        assert_eq!(Fingerprint::from_hex(&hex), Some(h.base));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        let mut bad = h.clone();
        bad.block_size = Bytes(3);
        assert!(Header::decode(&bad.encode()).is_err());
    }
}
