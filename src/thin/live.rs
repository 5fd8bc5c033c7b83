//! Reading a live thin pool through a reserved metadata snapshot.
//!
//! A running pool rewrites its metadata at every commit, so lvmsync never walks the live
//! trees. Instead [`diff_pool_devices`]:
//!
//! 1. refuses to start if the pool already holds a metadata snapshot (someone else's, or a
//!    crashed run's) unless `force` is set, in which case it releases it first;
//! 2. sends `reserve_metadata_snap` to the pool's thin-pool target (`<vg>-<pool>-tpool` for
//!    LVM pools) through the `devicemapper` crate: the kernel commits and copies the superblock
//!    to a new block whose trees stay frozen while held;
//! 3. reads that block's number from the pool status (the params field after the data
//!    usage; `-` means none is held);
//! 4. reads the `_tmeta` device with `O_DIRECT` (the pool writes metadata through its own
//!    buffer cache, so a buffered read of the device could return stale pages) and diffs the
//!    two devices as [`super::diff`] does (or lists what one device maps in a byte range,
//!    [`mapped_in_pool_device`], or both from the one snapshot,
//!    [`diff_and_mapped_in_pool_devices`]);
//! 5. sends `release_metadata_snap`, from a guard's `Drop` (so also on errors and panics) and
//!    from a SIGINT/SIGTERM watcher that releases and then exits with 128 + signal.
//!
//! Needs root and device-mapper; tested in the guest (`vm-tests`).

use super::diff::{diff_devices, mapped_in, DiffStats};
use super::source::FileSource;
use super::superblock::Superblock;
use crate::error::{Error, Result};
use crate::ChangeSet;
use devicemapper::{DevId, DmName, DmOptions, DM};
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

/// Diff thin devices `old_id` (`None`: everything mapped in `new_id`) and `new_id` of the live
/// pool whose thin-pool target is the dm device `pool_dm_name`, reading its metadata device
/// `tmeta_path` under a reserved metadata snapshot that is always released afterwards.
/// `force` releases a metadata snapshot already held when lvmsync starts.
pub fn diff_pool_devices(
    pool_dm_name: &str,
    tmeta_path: &Path,
    old_id: Option<u64>,
    new_id: u64,
    force: bool,
) -> Result<ChangeSet> {
    Ok(diff_pool_devices_with_stats(pool_dm_name, tmeta_path, old_id, new_id, force)?.0)
}

/// [`diff_pool_devices`], also returning how much work the diff did (for benchmarks).
pub fn diff_pool_devices_with_stats(
    pool_dm_name: &str,
    tmeta_path: &Path,
    old_id: Option<u64>,
    new_id: u64,
    force: bool,
) -> Result<(ChangeSet, DiffStats)> {
    with_held_metadata(pool_dm_name, tmeta_path, force, |src, sb| {
        diff_devices(src, sb, old_id, new_id)
    })
}

/// The bytes in `bytes` that thin device `dev` of the live pool maps ([`mapped_in`]: only
/// the metadata holding that range is read), under a reserved metadata snapshot as
/// [`diff_pool_devices`] reads it.
pub fn mapped_in_pool_device(
    pool_dm_name: &str,
    tmeta_path: &Path,
    dev: u64,
    bytes: Range<u64>,
    force: bool,
) -> Result<ChangeSet> {
    with_held_metadata(pool_dm_name, tmeta_path, force, |src, sb| {
        mapped_in(src, sb, dev, bytes)
    })
}

/// What a `send --since` of a grown thin device reads, from one reserved metadata snapshot:
/// the diff of devices `old_id` and `new_id` ([`diff_pool_devices`]) and what `new_id` maps in
/// `grown` ([`mapped_in_pool_device`]). One snapshot makes both one point in time and costs
/// one reserve and release (each a metadata commit of the pool).
pub fn diff_and_mapped_in_pool_devices(
    pool_dm_name: &str,
    tmeta_path: &Path,
    old_id: u64,
    new_id: u64,
    grown: Range<u64>,
    force: bool,
) -> Result<(ChangeSet, ChangeSet)> {
    with_held_metadata(pool_dm_name, tmeta_path, force, |src, sb| {
        let (diff, _) = diff_devices(src, sb, Some(old_id), new_id)?;
        Ok((diff, mapped_in(src, sb, new_id, grown)?))
    })
}

/// Steps 1 to 5 of the module docs around `read`, which gets the metadata device and the
/// held snapshot's superblock.
fn with_held_metadata<T>(
    pool_dm_name: &str,
    tmeta_path: &Path,
    force: bool,
    read: impl FnOnce(&FileSource, &Superblock) -> Result<T>,
) -> Result<T> {
    let pool = Pool::open(pool_dm_name)?;
    if let Some(stale) = pool.held_root()? {
        if !force {
            return Err(pool.error(format!(
                "the pool already holds a metadata snapshot (at block {stale}); another thin \
                 tool or an interrupted lvmsync left it. If nothing is using it, release it \
                 (`dmsetup message {pool_dm_name} 0 release_metadata_snap`, or `lvmsync diff \
                 <thin LV> --force`, which releases it first) and rerun"
            )));
        }
        tracing::warn!(
            pool = pool_dm_name,
            block = stale,
            "releasing a stale metadata snapshot"
        );
        pool.message("release_metadata_snap")?;
    }
    let _guard = HeldSnapshot::reserve(&pool)?;
    let held = pool.held_root()?.ok_or_else(|| {
        pool.error("reserve_metadata_snap succeeded but the status shows no held root".into())
    })?;
    let src = FileSource::open_direct(tmeta_path)?;
    let sb = Superblock::read(&src, held)?;
    read(&src, &sb)
}

/// A thin-pool target reached through device-mapper.
struct Pool {
    dm: DM,
    name: String,
}

impl Pool {
    fn open(name: &str) -> Result<Self> {
        let dm = DM::new().map_err(|e| Error::Device {
            device: name.to_string(),
            detail: format!(
                "cannot open /dev/mapper/control ({e}); run as root on a host with device-mapper"
            ),
        })?;
        DmName::new(name).map_err(|e| Error::InvalidArgument(format!("dm name {name:?}: {e}")))?;
        Ok(Pool {
            dm,
            name: name.to_string(),
        })
    }

    fn error(&self, detail: String) -> Error {
        Error::Device {
            device: self.name.clone(),
            detail,
        }
    }

    fn id(&self) -> Result<DevId<'_>> {
        let name = DmName::new(&self.name)
            .map_err(|e| Error::InvalidArgument(format!("dm name {:?}: {e}", self.name)))?;
        Ok(DevId::Name(name))
    }

    /// Send a target message such as `reserve_metadata_snap`.
    fn message(&self, msg: &str) -> Result<()> {
        self.dm
            .target_msg(&self.id()?, None, msg)
            .map_err(|e| self.error(format!("message {msg:?} failed: {e}")))?;
        Ok(())
    }

    /// The held metadata root from the pool status, `None` when the status shows `-`.
    fn held_root(&self) -> Result<Option<u64>> {
        let (_, targets) = self
            .dm
            .table_status(&self.id()?, DmOptions::default())
            .map_err(|e| self.error(format!("cannot read the pool status: {e}")))?;
        let (_, _, kind, params) = targets
            .first()
            .ok_or_else(|| self.error("the device has no table loaded".into()))?;
        if kind != "thin-pool" {
            return Err(self.error(format!(
                "is a {kind} target, not thin-pool (for an LVM pool use <vg>-<pool>-tpool)"
            )));
        }
        parse_held_root(params).map_err(|e| self.error(e))
    }
}

/// The held metadata root in thin-pool status params: `<transaction id> <used>/<total meta>
/// <used>/<total data> <held root or -> ...`.
pub fn parse_held_root(params: &str) -> Result<Option<u64>, String> {
    let fields: Vec<&str> = params.split_whitespace().collect();
    match fields.get(3) {
        _ if fields
            .first()
            .is_some_and(|f| *f == "Fail" || *f == "Error") =>
        {
            Err(format!(
                "the pool has failed (status {params:?}); repair it first"
            ))
        }
        Some(&"-") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("unexpected held root {v:?} in pool status {params:?}")),
        None => Err(format!("unexpected pool status {params:?}")),
    }
}

/// The pool (dm name) whose metadata snapshot this process holds, for the signal watcher.
static HELD: Mutex<Option<String>> = Mutex::new(None);
/// Write end of the pipe the signal handler wakes the watcher thread through.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// A reserved metadata snapshot; dropping it releases it.
struct HeldSnapshot {
    pool: String,
}

impl HeldSnapshot {
    fn reserve(pool: &Pool) -> Result<Self> {
        install_signal_release()?;
        // Hold the lock across the message so a signal can't slip between reserve and record.
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        pool.message("reserve_metadata_snap")?;
        *held = Some(pool.name.clone());
        tracing::debug!(pool = pool.name, "metadata snapshot reserved");
        Ok(HeldSnapshot {
            pool: pool.name.clone(),
        })
    }
}

impl Drop for HeldSnapshot {
    fn drop(&mut self) {
        release_held();
        tracing::debug!(pool = self.pool, "metadata snapshot released");
    }
}

/// Release the metadata snapshot this process holds, if any (guard drop or signal watcher).
fn release_held() {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(name) = held.take() {
        if let Err(e) = Pool::open(&name).and_then(|p| p.message("release_metadata_snap")) {
            tracing::warn!(
                "{e}; release it by hand: dmsetup message {name} 0 release_metadata_snap"
            );
        }
    }
}

extern "C" fn on_signal(sig: nix::libc::c_int) {
    // Only async-signal-safe work here: one write(2) to wake the watcher thread.
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    let byte = sig as u8;
    // SAFETY: writing one byte from a live stack variable to a pipe fd we own.
    unsafe { nix::libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// Once per process: route SIGINT and SIGTERM to a thread that releases a held metadata
/// snapshot and then exits with 128 + the signal number, as the default action would.
fn install_signal_release() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    static ONCE: Once = Once::new();
    static FAILED: Mutex<Option<String>> = Mutex::new(None);
    ONCE.call_once(|| {
        let setup = || -> std::result::Result<(), String> {
            let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
            SIGNAL_PIPE.store(wr.into_raw_fd(), Ordering::SeqCst);
            std::thread::Builder::new()
                .name("lvmsync-signal".into())
                .spawn(move || {
                    let mut byte = [0u8; 1];
                    if File::from(rd).read_exact(&mut byte).is_ok() {
                        release_held();
                        std::process::exit(128 + i32::from(byte[0]));
                    }
                })
                .map_err(|e| format!("signal thread: {e}"))?;
            let action = SigAction::new(
                SigHandler::Handler(on_signal),
                SaFlags::SA_RESTART,
                SigSet::empty(),
            );
            for sig in [Signal::SIGINT, Signal::SIGTERM] {
                // SAFETY: the handler only calls write(2), which is async-signal-safe.
                unsafe { sigaction(sig, &action) }.map_err(|e| format!("sigaction: {e}"))?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            *FAILED.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    });
    match FAILED.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        Some(e) => Err(Error::Device {
            device: "signal handling".into(),
            detail: format!("cannot install the release-on-signal handler: {e}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_root_from_status() {
        let base = "1 10/1024 0/16";
        assert_eq!(
            parse_held_root(&format!("{base} - rw discard_passdown")),
            Ok(None)
        );
        assert_eq!(parse_held_root(&format!("{base} 77 rw")), Ok(Some(77)));
        assert!(parse_held_root("Fail").is_err());
        assert!(parse_held_root(&format!("{base} x rw")).is_err());
        assert!(parse_held_root("1 2").is_err());
    }
}
