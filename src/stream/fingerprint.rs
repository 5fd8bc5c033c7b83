//! Content fingerprints: the blake3-based identity of one state of a device or image.
//!
//! A fingerprint is blake3 in derive-key mode (so it can never collide with a plain hash of
//! the same bytes) over the size as u64 LE followed by the first `size` bytes. The sender
//! puts the base's and the target's fingerprints in the header; the receiver records the
//! target's in its state file and, when it has no state file, computes the destination's
//! own fingerprint to check that a delta's base really is what it holds.

use super::header::Fingerprint;
use crate::error::{Error, Result};
use crate::units::Bytes;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The key-derivation context: changing it changes every fingerprint.
const CONTEXT: &str = "lvmsync 2026-11 content fingerprint v1";

/// Fingerprint the first `size` bytes of `path`; bytes past its end count as zeroes.
pub fn content_fingerprint(path: &Path, size: Bytes) -> Result<Fingerprint> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    fingerprint_reader(file, size).map_err(|e| Error::io(path, e))
}

/// Fingerprint the first `size` bytes read from `input` (zero-padded if it ends early).
pub fn fingerprint_reader(mut input: impl Read, size: Bytes) -> std::io::Result<Fingerprint> {
    let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
    hasher.update(&size.0.to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size.0;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match input.read(&mut buf[..want]) {
            Ok(0) => {
                buf[..want].fill(0);
                want
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(Fingerprint(*hasher.finalize().as_bytes()))
}
