//! Whether and how a `--since` send refines its changes against the older snapshot
//! (`lvmsync::stream::refine`): the one place the choice is made, its log lines, and the hint
//! for a resumed send that made the other choice.

use super::SendArgs;
use anyhow::Context;
use lvmsync::stream::refine::{refine, UNIT};
use lvmsync::units::Bytes;
use lvmsync::ChangeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The older snapshot of a live `--since` send, whose bytes the changes are refined against.
pub(super) struct Refinable {
    /// Its device node (`/dev/mapper/<dm name>`): the older point in time (for classic
    /// snapshots too: a snapshot device shows its origin as it was when it was taken).
    pub(super) device: PathBuf,
    /// How the user named it (for the dry run's plan).
    pub(super) name: String,
}

/// Why a `--since` send sends whole changed blocks instead of refining them.
#[derive(Debug)]
pub(super) enum Whole {
    /// The changes are listed in chunks of this size, no bigger than [`UNIT`] (classic
    /// snapshots' default 4 KiB chunks): refining could drop only identical rewrites.
    Fine(Bytes),
    /// The older snapshot's device can't be opened.
    Unreadable(std::io::Error),
    /// The older snapshot is writable and `--refine` was not given.
    Writable,
}

/// Whether to refine changes listed at `granularity` against the older snapshot `device`:
/// only when that can pay and is safe. Changes listed in 4 KiB chunks already (classic
/// snapshots' default) could lose only the chunks rewritten with identical bytes, at the price
/// of reading all of them from the older snapshot, so they are sent as listed. Otherwise the
/// device must be readable, and read-only, so its bytes are still those that were sent and
/// that the destination holds; a writable one may have been written since (a journal replay
/// by a read-only mount is enough), and refining against it could leave out bytes the
/// destination needs. `forced` (`--refine`) refines whenever the device can be read.
pub(super) fn refine_choice(device: &Path, forced: bool, granularity: Bytes) -> Result<(), Whole> {
    if !forced && granularity <= UNIT {
        return Err(Whole::Fine(granularity));
    }
    File::open(device).map_err(Whole::Unreadable)?;
    match forced || read_only(device) {
        true => Ok(()),
        false => Err(Whole::Writable),
    }
}

/// The older snapshot to refine against ([`refine_choice`]); when there is none, one info
/// line says why and how to refine. Nothing is activated here.
pub(super) fn refinable(
    device: PathBuf,
    name: String,
    forced: bool,
    granularity: Bytes,
) -> Option<Refinable> {
    let why = match refine_choice(&device, forced, granularity) {
        Ok(()) => return Some(Refinable { device, name }),
        Err(why) => why,
    };
    match why {
        Whole::Fine(g) => tracing::info!(
            base = %device.display(),
            "not refining: the changes are listed in {g}-byte chunks, no bigger than the 4 KiB \
             refinement unit, so reading {name} could only drop chunks rewritten with identical \
             bytes; sending them as listed (--refine: refine anyway)"
        ),
        Whole::Unreadable(e) => tracing::info!(
            base = %device.display(),
            "not refining: can't read {} ({e}); sending whole changed blocks. To send only \
             the changed 4 KiB units, make it readable (a thin snapshot with the activation-skip \
             flag: `lvchange -ay -K {name}`), or pass --no-refine to silence this",
            device.display()
        ),
        Whole::Writable => tracing::info!(
            base = %device.display(),
            "not refining: {name} is writable, so its bytes may no longer be those the \
             destination holds; sending whole changed blocks. To send only the changed 4 KiB \
             units, keep sent snapshots read-only (`lvchange -pr {name}`), or pass --refine if \
             it has not been written since it was sent"
        ),
    }
    None
}

/// Whether the kernel marks block device `dev` read-only (`/sys/dev/block/<maj>:<min>/ro`),
/// as LVM does for an LV with `r` permission; false when that can't be told.
fn read_only(dev: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dev) else {
        return false;
    };
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/ro"))
        .is_ok_and(|s| s.trim() == "1")
}

/// What to do when a resumed send's changes are not those of the interrupted send: name
/// the flag that makes the other refinement choice (the usual cause), or the options that
/// shape the changes.
pub(super) fn resume_hint(args: &SendArgs, refine_base: Option<&Refinable>) -> String {
    match (&args.since, refine_base) {
        (_, Some(b)) => format!(
            "not resuming: this send refines the changes against {}; if the interrupted one \
             sent whole changed blocks (with --no-refine, or {} was writable then), resume \
             with --no-refine",
            b.name, b.name
        ),
        (Some(since), None) => format!(
            "not resuming: this send sends whole changed blocks; if the interrupted one \
             refined them against {since} (it was read-only then, or with --refine), resume \
             with --refine"
        ),
        (None, None) => {
            "not resuming: it needs the interrupted send's source, --base and --block-size".into()
        }
    }
}

/// `changes` cut down to the 4 KiB units of `src` that differ from the older snapshot.
pub(super) fn refine_changes(
    changes: &ChangeSet,
    src: &Path,
    base: &Refinable,
) -> anyhow::Result<ChangeSet> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let r = refine(changes, src, &base.device, workers).with_context(|| {
        format!(
            "refining the changes against {} (pass --no-refine to send whole changed blocks \
                 without reading it)",
            base.device.display()
        )
    })?;
    tracing::info!(
        base = %base.device.display(),
        compared_bytes = r.compared.0,
        unchanged_bytes = r.unchanged.0,
        "refined against {}: {} of {} changed bytes equal it in 4 KiB units and are not sent",
        base.device.display(),
        r.unchanged,
        r.compared
    );
    Ok(r.changes)
}
