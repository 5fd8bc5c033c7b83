//! Where a destination's journal and state file live, and the state file itself.
//!
//! Both sit in the state directory (`--state-dir`, default `/var/lib/lvmsync`), named by a
//! key derived from the destination's canonical path: readable (the path with `/` → `_`)
//! plus 16 hex digits of its blake3, so two paths never share a journal. The state file is
//! small JSON, replaced atomically (write temp, fsync, rename, fsync directory).

use super::dest::sync_dir;
use crate::error::{Error, Result};
use crate::stream::Fingerprint;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lvmsync";

/// The files lvmsync keeps for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestPaths {
    /// The destination's canonical path (what the journal head records).
    pub canonical: String,
    /// The state directory.
    pub dir: PathBuf,
    /// The undo journal of an apply in progress.
    pub journal: PathBuf,
    /// A finished journal kept for the next apply to reuse (never read by recovery).
    pub spare: PathBuf,
    /// The state file (target fingerprint of the last applied delta).
    pub state: PathBuf,
    /// Held (flock) by whoever applies to or recovers the destination.
    pub lock: PathBuf,
}

/// An exclusive hold on a destination's journal and state; released on drop.
pub struct DestLock {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

impl DestPaths {
    /// The paths for destination `dest` under `state_dir` (created if missing).
    pub fn new(state_dir: &Path, dest: &Path) -> Result<Self> {
        let canonical = canonical_path(dest)?;
        std::fs::create_dir_all(state_dir).map_err(|e| Error::io(state_dir, e))?;
        let readable: String = canonical
            .trim_start_matches('/')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let hash = blake3::hash(canonical.as_bytes()).to_hex();
        let key = format!("{readable}-{}", &hash[..16]);
        Ok(DestPaths {
            canonical,
            dir: state_dir.to_path_buf(),
            journal: state_dir.join(format!("{key}.journal")),
            spare: state_dir.join(format!("{key}.spare")),
            state: state_dir.join(format!("{key}.state")),
            lock: state_dir.join(format!("{key}.lock")),
        })
    }

    /// Take the destination's lock, failing at once if another lvmsync holds it (two
    /// receivers on one destination would undo each other's journals).
    pub fn lock(&self) -> Result<DestLock> {
        use nix::fcntl::{Flock, FlockArg};
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| Error::io(&self.lock, e))?;
        Flock::lock(f, FlockArg::LockExclusiveNonblock)
            .map(|f| DestLock { _flock: f })
            .map_err(|(_, errno)| Error::Destination {
                dest: self.canonical.clone(),
                detail: format!(
                    "another lvmsync is applying to or recovering it ({errno}); wait for it to end"
                ),
            })
    }
}

/// The canonical path of `p`, which may not exist yet (then its parent must).
fn canonical_path(p: &Path) -> Result<String> {
    let c = match std::fs::canonicalize(p) {
        Ok(c) => c,
        Err(_) => {
            let parent = p.parent().filter(|x| !x.as_os_str().is_empty());
            let parent = std::fs::canonicalize(parent.unwrap_or(Path::new(".")))
                .map_err(|e| Error::io(p, e))?;
            parent.join(p.file_name().ok_or_else(|| Error::Destination {
                dest: p.display().to_string(),
                detail: "is not a file or device path".into(),
            })?)
        }
    };
    Ok(c.display().to_string())
}

/// What the receiver knows about a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestState {
    /// The destination's canonical path.
    pub dest: String,
    /// Fingerprint (hex) of the state the destination now holds.
    pub fingerprint: String,
    /// Device size of the stream that produced it.
    pub device_size: u64,
    /// Where the data came from (the stream header's source).
    pub source: String,
    /// When the delta was applied, seconds since the Unix epoch.
    pub applied_unix: u64,
}

impl DestState {
    /// The fingerprint, or `None` if the state file holds garbage.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        Fingerprint::from_hex(&self.fingerprint)
    }

    /// Load the state file; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<DestState>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Integrity {
                    stream: path.display().to_string(),
                    detail: format!("state file is not valid ({e}); delete it and use --force"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Replace the state file atomically and durably.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("state.tmp");
        let json = serde_json::to_vec_pretty(self).expect("plain struct serialises");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::io(path, e))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
