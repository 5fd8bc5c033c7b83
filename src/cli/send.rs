//! `lvmsync send`: write a delta stream of an image's changes (or a full, sparse copy).

use anyhow::Context;
use clap::Args;
use lvmsync::dm::{DeviceKind, ProbeReport};
use lvmsync::stream::encode::rest_after;
use lvmsync::stream::fingerprint::{content_fingerprint, fingerprint_keeping_leaves, LeafHashes};
use lvmsync::stream::progress::{Progress, ProgressMode};
use lvmsync::stream::record::Checkpoint;
use lvmsync::stream::{send_changes, EncodeOptions, Fingerprint, Header};
use lvmsync::transport::{connect, ConnectOptions, Dest, SshOptions, TlsFiles};
use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, Error, Extent, ExtentKind};
use std::fs::File;
use std::path::{Path, PathBuf};

mod grown;
mod refining;

use grown::{
    external_origin, removed_as_data, with_grown_tail_as_data, with_grown_thin_tail,
    with_holes_discarded,
};
use refining::{refinable, refine_changes, resume_hint, Refinable};

/// Arguments of `lvmsync send`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lvmsync send disk.img --to full.lvd                       # full sync (zero runs are sparse)
  lvmsync send --base old.img new.img --to delta.lvd        # block-hash delta
  lvmsync send --base old.img new.img --to - | lvmsync receive /dev/vg/copy
  lvmsync send vg0/snap2 --since vg0/snap1 --to delta.lvd   # live LVM snapshots
  lvmsync send vg0/snap2 --since vg0/snap1 --no-refine --to delta.lvd  # whole changed blocks
  lvchange -pr vg0/snap1   # a read-only base: --since sends only the changed 4 KiB units
  lvmsync send vg0/thinsnap --to full.lvd                   # full sync of a thin snapshot
  lvmsync send --base old.img new.img --to ssh://backup/srv/copy.img
  lvmsync send --base old.img new.img --to tls://backup:7000/copy --cert c.pem --key c.key --ca ca.pem")]
pub struct SendArgs {
    /// The image, device or snapshot to send.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// Where to write the stream: a file path or `-` for stdout, or a receiver (`ssh://`,
    /// `tls://`, `quic://`, `tcp://`), whose refusal `send` exits with (the receiver's code).
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// Old image: send only the blocks that differ from it (block-hash compare).
    #[arg(long, value_name = "OLD", conflicts_with = "since")]
    pub base: Option<PathBuf>,
    /// Older LVM snapshot of the same volume: send the changes since it. When its device
    /// is read-only (`lvcreate -pr`, `lvchange -pr`) it is also read to refine them: of
    /// each changed thin block or COW chunk bigger than 4 KiB only the 4 KiB units that
    /// differ from it are sent (see --refine, --no-refine).
    #[arg(long, value_name = "SNAPSHOT")]
    pub since: Option<String>,
    /// With --since: refine even though the older snapshot is writable, or the changes are
    /// listed in 4 KiB COW chunks (which refining can only cut by identical rewrites).
    /// Refining trusts its bytes to be those the destination holds: use this only if it has
    /// not been written since it was sent (not even by `mount -o ro`, which replays an
    /// ext4/XFS journal into it); a write there would make the send leave out bytes the
    /// destination needs. Making it read-only (`lvchange -pr`) is the safe way.
    #[arg(long, requires = "since", conflicts_with = "no_refine")]
    pub refine: bool,
    /// With --since: send whole changed blocks/chunks as the snapshot metadata lists them,
    /// even when the older snapshot is read-only (refining costs one read of the older
    /// snapshot's changed blocks and a second read of the units that differ; it saves
    /// hashing, compressing, sending and applying the equal ones).
    #[arg(long, requires = "since")]
    pub no_refine: bool,
    /// Block size in bytes for --base compares and zero detection.
    #[arg(long, default_value_t = 65536)]
    pub block_size: u64,
    /// zstd compression level.
    #[arg(long, default_value_t = 1)]
    pub level: i32,
    /// Print the plan (extents, bytes) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress display: auto, bar, json or none.
    #[arg(long, default_value = "auto")]
    pub progress: ProgressMode,
    /// Send only what follows the checkpoint of an interrupted transfer: the token the
    /// receiver printed (files, pipes, ssh: it continues with `receive --resume`), or with no
    /// token the resume point a listening receiver offers (tls://, quic://, tcp://). Give the
    /// interrupted send's options (--since/--base, --block-size, --refine/--no-refine): other
    /// changes are refused before anything is sent (exit 2).
    #[arg(long, value_name = "TOKEN", num_args = 0..=1, default_missing_value = "offered")]
    pub resume: Option<String>,
    /// Stream bytes between checkpoints (default 64 MiB; small values for tests).
    #[arg(long, hide = true)]
    pub checkpoint_every: Option<u64>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// How to reach network destinations (`ssh://`, `tls://`, `quic://`, `tcp://`).
#[derive(Debug, Args)]
pub struct NetArgs {
    /// This client's certificate (PEM) for tls:// and quic://.
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// The CA that signed the receiver's certificate (PEM).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// ssh:// identity file (`ssh -i`).
    #[arg(long, value_name = "FILE")]
    pub ssh_identity: Option<PathBuf>,
    /// Extra ssh argument, repeatable (`--ssh-arg=-p2222`, `--ssh-arg=-oUserKnownHostsFile=k`).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub ssh_arg: Vec<String>,
    /// The lvmsync binary on the ssh:// far side.
    #[arg(long, value_name = "PATH", default_value = "lvmsync")]
    pub remote_lvmsync: String,
    /// Extra argument for the remote `lvmsync receive`, repeatable (`--remote-arg=--force`).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub remote_arg: Vec<String>,
}

impl NetArgs {
    /// The transport library's options.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            tls: TlsFiles {
                cert: self.cert.clone(),
                key: self.key.clone(),
                ca: self.ca.clone(),
            },
            ssh: SshOptions {
                identity: self.ssh_identity.clone(),
                extra_args: self.ssh_arg.clone(),
                remote_lvmsync: self.remote_lvmsync.clone(),
                remote_args: self.remote_arg.clone(),
                ..SshOptions::default()
            },
        }
    }
}

/// Size of a file or block device.
pub fn device_size(path: &Path) -> anyhow::Result<u64> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(Bytes::len_of(&f).map_err(|e| Error::io(path, e))?.0)
}

/// What to send: the changes, where their bytes are read, and the header.
struct Plan {
    changes: ChangeSet,
    read_from: PathBuf,
    header: Header,
    /// The source's leaf hashes behind the target fingerprint (images only), reused by the
    /// encoder as record hashes.
    leaves: LeafHashes,
    /// The older snapshot's device to refine the changes against (live `--since` sends).
    refine_base: Option<Refinable>,
}

/// Check `--block-size`.
fn block_size(args: &SendArgs) -> anyhow::Result<u64> {
    let ok = args.block_size.is_power_of_two() && (512..=1 << 30).contains(&args.block_size);
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "--block-size {} is not a power of two between 512 and 1 GiB",
            args.block_size
        ))
        .into());
    }
    Ok(args.block_size)
}

/// A header with everything but the change-source specific fields filled in.
fn header(source: String, size: u64, block: u64, touched: Bytes) -> Header {
    Header {
        source,
        source_uuid: String::new(),
        device_size: Bytes(size),
        base_size: Bytes(0),
        block_size: Bytes(block),
        base: Fingerprint::NONE,
        target: Fingerprint::NONE,
        created_unix: lvmsync::journal::state::now_unix(),
        touched_bytes: touched,
    }
}

/// `changes` without anything at or past `size` (a block-hash compare against a longer old
/// image reports its tail as removed; the destination keeps bytes past the device size).
pub fn clip_to(changes: &ChangeSet, size: u64) -> anyhow::Result<ChangeSet> {
    let kept = changes
        .extents()
        .iter()
        .filter(|e| e.offset.0 < size)
        .map(|e| {
            let len = e.length.0.min(size - e.offset.0);
            Extent::new(e.offset.0, len, e.kind)
        });
    Ok(ChangeSet::from_extents(changes.block_size(), kept)?)
}

/// Images and plain devices: everything (full, sparse) or a block-hash delta against --base.
/// With --base, one pass over both inputs finds the changed blocks and both fingerprints.
fn plan_image(args: &SendArgs, block: u64) -> anyhow::Result<Plan> {
    let src = &args.source;
    let size = device_size(src)?;
    let (changes, base, mut leaves) = match &args.base {
        Some(old) => {
            let found = lvmsync::blockhash::compare_and_fingerprint(old, src, Bytes(block))
                .with_context(|| format!("comparing {} with {}", old.display(), src.display()))?;
            let (base, target) = found.fingerprints.expect("asked for");
            let changes = clip_to(&found.changes, size)?;
            let base = Some((found.old_len, base, target));
            (changes, base, found.new_leaves)
        }
        None => {
            let all = Extent::new(0, size, ExtentKind::Changed);
            let changes = ChangeSet::from_extents(Bytes(block), [all])?;
            (changes, None, LeafHashes::default())
        }
    };
    let mut h = header(
        src.display().to_string(),
        size,
        block,
        changes.changed_bytes(),
    );
    match base {
        Some((base_size, base, target)) => {
            (h.base_size, h.base, h.target) = (base_size, base, target);
        }
        None => (h.target, leaves) = fingerprint_keeping_leaves(src, Bytes(size))?,
    }
    Ok(Plan {
        changes,
        read_from: src.clone(),
        header: h,
        leaves,
        refine_base: None,
    })
}

/// The identity of an LVM snapshot: its dm UUID (VG and LV UUIDs) and size. Reading whole
/// LVs to fingerprint their contents would defeat metadata-based change discovery.
fn lvm_identity(p: &ProbeReport) -> Fingerprint {
    let mut h = blake3::Hasher::new_derive_key("lvmsync 2026-11 lvm snapshot identity v1");
    h.update(p.dm_uuid.as_deref().unwrap_or(&p.dm_name).as_bytes());
    h.update(&p.size.0.to_le_bytes());
    Fingerprint(*h.finalize().as_bytes())
}

/// The identity a destination records after receiving all of `source` (a full send or a
/// `verify --repair`): the LVM identity for a device device-mapper knows, so that a later
/// `send <newer> --since <source>` matches it as its base; the content fingerprint otherwise.
pub(super) fn target_identity(source: &Path, size: Bytes) -> anyhow::Result<Fingerprint> {
    use std::os::unix::fs::FileTypeExt;
    let is_block = std::fs::metadata(source).is_ok_and(|m| m.file_type().is_block_device());
    let dm = is_block
        .then(|| lvmsync::dm::probe(&source.display().to_string()).ok())
        .flatten();
    Ok(match dm {
        Some(p) => lvm_identity(&p),
        None => content_fingerprint(source, size)?,
    })
}

/// Live LVM snapshots: changes from snapshot metadata, data read from the snapshot itself.
fn plan_live(args: &SendArgs, block: u64) -> anyhow::Result<Plan> {
    let name = args.source.display().to_string();
    let snap = lvmsync::dm::probe(&name)?;
    let read_from = PathBuf::from(format!("/dev/mapper/{}", snap.dm_name));
    let size = snap.size.0;
    let external = external_origin(&snap);
    let (changes, base) = match &args.since {
        Some(since) => {
            let base = lvmsync::dm::probe(since)?;
            if size > base.size.0 {
                tracing::info!(
                    source = name,
                    grown_bytes = size - base.size.0,
                    "{name} grew by {} bytes since {since}: all of that part is sent (data, or \
                     zeroes where unmapped) and written at the destination (not journaled: it \
                     is not part of the base; zeroes only where it reads something else if it \
                     is a thin LV whose pool zeroes new blocks)",
                    size - base.size.0
                );
            }
            let base_size = base.size.0;
            let changes = match snap.kind {
                // The diff and the grown part's mappings from one metadata snapshot.
                DeviceKind::Thin if size > base_size => {
                    let grown = base_size..size;
                    let (changes, mapped) =
                        lvmsync::dm::diff_and_mapped_probed(&snap, &base, grown, false)?;
                    with_grown_thin_tail(&changes, &mapped, base_size, size)?
                }
                _ => {
                    let changes = lvmsync::dm::diff_probed(&snap, Some(&base), false)?;
                    if size <= base_size {
                        clip_to(&changes, size)?
                    } else {
                        with_grown_tail_as_data(&changes, base_size, size)?
                    }
                }
            };
            (changes, Some(base))
        }
        // A full sync of a thin snapshot: its mapped ranges, and discards for the holes.
        None if snap.kind == DeviceKind::Thin && !external => {
            let mapped = lvmsync::dm::mapped_probed(&snap, 0..size, false)?;
            (with_holes_discarded(&mapped, 0, size)?, None)
        }
        // A full sync of any other device: every byte, zero runs sparse.
        None => {
            let all = Extent::new(0, size, ExtentKind::Changed);
            (ChangeSet::from_extents(Bytes(block), [all])?, None)
        }
    };
    let changes = match external {
        true => {
            tracing::info!(
                source = name,
                "{name} has an external origin: its unmapped ranges read that origin's bytes, \
                 so they are sent as data, not as discards"
            );
            removed_as_data(&changes)?
        }
        false => changes,
    };
    let mut h = header(name, size, block, changes.changed_bytes());
    h.source_uuid = snap
        .lvm_uuids
        .as_ref()
        .map(|u| format!("{}/{}", u.vg_uuid, u.lv_uuid))
        .unwrap_or_default();
    if let Some(b) = &base {
        h.base = lvm_identity(b);
        h.base_size = b.size;
    }
    h.target = lvm_identity(&snap);
    let refine_base = match (&base, args.no_refine) {
        (Some(b), false) => refinable(
            PathBuf::from(format!("/dev/mapper/{}", b.dm_name)),
            args.since.clone().unwrap_or_default(),
            args.refine,
            changes.block_size(),
        ),
        _ => None,
    };
    Ok(Plan {
        changes,
        read_from,
        header: h,
        leaves: LeafHashes::default(),
        refine_base,
    })
}

/// True when the source names an LVM/dm device (a name, or a block device) rather than an
/// image file; a block device device-mapper does not know is sent as an image.
fn is_live(args: &SendArgs) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let block = std::fs::metadata(&args.source).map(|m| m.file_type().is_block_device());
    args.since.is_some()
        || (args.base.is_none()
            && match block {
                Err(_) => true,
                Ok(true) => lvmsync::dm::probe(&args.source.display().to_string()).is_ok(),
                Ok(false) => false,
            })
}

/// Run `lvmsync send`.
pub fn run(args: &SendArgs) -> anyhow::Result<()> {
    let block = block_size(args)?;
    let Plan {
        mut changes,
        read_from,
        mut header,
        leaves,
        refine_base,
    } = if is_live(args) {
        plan_live(args, block)?
    } else {
        plan_image(args, block)?
    };
    if args.dry_run {
        return print_plan(&changes, header.device_size.0, refine_base.as_ref());
    }
    let src = &read_from;
    if let Some(base) = &refine_base {
        changes = refine_changes(&changes, src, base)?;
        header.touched_bytes = changes.changed_bytes();
    }
    // A token is checked before connecting: a refused resume creates no destination file.
    let continues = |cp: Checkpoint| -> anyhow::Result<Checkpoint> {
        rest_after(&changes, &cp, &args.to)
            .with_context(|| resume_hint(args, refine_base.as_ref()))?;
        Ok(cp)
    };
    let token = match args.resume.as_deref() {
        Some(token) if token != "offered" => {
            Some(continues(lvmsync::journal::resume::parse_token(token)?)?)
        }
        _ => None,
    };
    let mut progress = Progress::new(args.progress, "send");
    let mut report = |d, t| progress.update(d, t);
    let mut opts = EncodeOptions {
        level: args.level,
        checkpoint_every: args.checkpoint_every,
        leaves,
        ..EncodeOptions::default()
    };
    let dest: Dest = args.to.parse()?;
    tracing::info!(
        source = %src.display(),
        dest = args.to,
        extents = changes.len(),
        bytes = changes.changed_bytes().0,
        "sending {} extents ({} bytes) of {} to {}",
        changes.len(),
        changes.changed_bytes(),
        src.display(),
        args.to
    );
    let conn = connect(&dest, &args.net.options())?;
    opts.resume = match args.resume.as_deref() {
        Some("offered") => {
            let offered = conn.resume_point().ok_or_else(|| Error::Destination {
                dest: args.to.clone(),
                detail: "the receiver has nothing to resume; send without --resume".into(),
            })?;
            let cp = Checkpoint::decode(offered).map_err(|d| Error::Transport {
                endpoint: args.to.clone(),
                detail: format!("the receiver offered a bad resume point: {d}"),
            })?;
            Some(continues(cp)?)
        }
        _ => token,
    };
    let sent = send_changes(src, &changes, &header, conn, &args.to, opts, &mut report);
    let summary = match sent.and_then(|(conn, summary)| conn.finish().map(|_| summary)) {
        Ok(summary) => summary,
        Err(e) => {
            // Only a stream file this send wrote: never a device node or FIFO named by --to.
            if let Dest::File(path) = &dest {
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
                    let _ = std::fs::remove_file(path);
                }
            }
            return Err(e.into());
        }
    };
    progress.finish();
    let root = Fingerprint(summary.totals.root).to_hex();
    tracing::info!(
        dest = args.to,
        data_bytes = summary.data_bytes,
        compressed_plain_bytes = summary.compressed_plain_bytes,
        zero_bytes = summary.zero_bytes,
        discard_bytes = summary.discard_bytes,
        records = summary.totals.records,
        stream_bytes = summary.totals.stream_bytes,
        root,
        "sent {} data bytes ({} compressed), {} zero, {} discard in {} records, \
         {} stream bytes; root {root}",
        summary.data_bytes,
        summary.compressed_plain_bytes,
        summary.zero_bytes,
        summary.discard_bytes,
        summary.totals.records,
        summary.totals.stream_bytes,
    );
    Ok(())
}

fn print_plan(
    changes: &ChangeSet,
    size: u64,
    refine_base: Option<&Refinable>,
) -> anyhow::Result<()> {
    let by_kind = |k: ExtentKind| -> u64 {
        changes
            .extents()
            .iter()
            .filter(|e| e.kind == k)
            .map(|e| e.length.0)
            .sum()
    };
    let bytes = changes.changed_bytes().0;
    println!(
        "plan: {} extents, {} bytes of a {} byte device ({} changed, {} added, {} removed); \
         about {:.1} s at 500 MB/s before zero detection and compression",
        changes.len(),
        bytes,
        size,
        by_kind(ExtentKind::Changed),
        by_kind(ExtentKind::Added),
        by_kind(ExtentKind::Removed),
        bytes as f64 / 500e6
    );
    if let Some(base) = refine_base {
        println!(
            "an upper bound: the send reads {} and leaves out the 4 KiB units of changed \
             blocks that equal it (--no-refine: send them whole)",
            base.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
