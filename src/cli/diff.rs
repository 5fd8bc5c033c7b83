//! `lvmsync diff`: list the extents that changed, from snapshot metadata or a block-hash compare.

use anyhow::Context;
use clap::Args;
use lvmsync::units::Bytes;
use lvmsync::ChangeSet;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `lvmsync diff`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lvmsync diff --thin-metadata pool.meta --snap1 1 --snap2 2
  lvmsync diff --thin-metadata pool.meta --snap2 2          # everything mapped in device 2
  lvmsync diff --thin-metadata pool.meta --metadata-snap --snap1 1 --snap2 2  # held snapshot
  lvmsync diff --cow-store snap-cow.img
  lvmsync diff --base old.img new.img --block-size 65536
  lvmsync diff vg0/snap-new --since vg0/snap-old          # live LVM snapshots (root)
  lvmsync diff vg0/thin-snap                              # thin: everything mapped

Output: one extent a line, `<offset_bytes> <length_bytes> <changed|added|removed>`,
then a summary line; --json prints one JSON object instead.")]
pub struct DiffArgs {
    /// Thin-pool metadata file or device to read offline (as `thin_delta` does).
    #[arg(long, value_name = "FILE", requires = "snap2", conflicts_with_all = ["cow_store", "base"])]
    pub thin_metadata: Option<PathBuf>,
    /// Older thin device id (with --thin-metadata); omit for everything mapped in --snap2.
    #[arg(long, value_name = "DEV_ID", requires = "thin_metadata")]
    pub snap1: Option<u64>,
    /// Newer thin device id (with --thin-metadata).
    #[arg(long, value_name = "DEV_ID", requires = "thin_metadata")]
    pub snap2: Option<u64>,
    /// With --thin-metadata: read through the metadata snapshot the superblock holds (the
    /// pool's state at `reserve_metadata_snap`), like `thin_delta -m`.
    #[arg(long, requires = "thin_metadata")]
    pub metadata_snap: bool,
    /// A classic snapshot's exception store (a copy of its `-cow` device) to read offline.
    #[arg(long, value_name = "FILE", conflicts_with = "base")]
    pub cow_store: Option<PathBuf>,
    /// Old image or device for a block-hash compare against the positional new one.
    #[arg(long, value_name = "OLD", requires = "target")]
    pub base: Option<PathBuf>,
    /// Block size in bytes for --base compares.
    #[arg(long, default_value_t = 65536, requires = "base")]
    pub block_size: u64,
    /// The newer image (with --base), or the snapshot LV to diff live (`vg/lv`, /dev/...).
    #[arg(value_name = "NEW|SNAPSHOT")]
    pub target: Option<PathBuf>,
    /// Live mode: the older snapshot of the same origin/pool to diff `SNAPSHOT` against.
    /// This is the metadata's diff as it is: for a volume that grew or shrank between the
    /// two, `send --since` also sends the grown part and leaves out mappings past the end.
    #[arg(long, value_name = "OLDER", requires = "target", conflicts_with_all = ["base", "thin_metadata", "cow_store"])]
    pub since: Option<String>,
    /// Live thin mode: release a pool metadata snapshot an interrupted run left held.
    #[arg(long)]
    pub force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `lvmsync diff`.
pub fn run(args: &DiffArgs) -> anyhow::Result<()> {
    let changes = if let Some(meta) = &args.thin_metadata {
        let snap2 = args.snap2.context("--thin-metadata needs --snap2")?;
        lvmsync::thin::diff_metadata_file(meta, args.snap1, snap2, args.metadata_snap)?
    } else if let Some(cow) = &args.cow_store {
        lvmsync::cow::changes_from_file(cow)?
    } else if let (Some(old), Some(new)) = (&args.base, &args.target) {
        lvmsync::blockhash::compare_files(old, new, Bytes(args.block_size))?
    } else if let Some(snapshot) = &args.target {
        let since = args.since.as_deref();
        lvmsync::dm::diff_live(&snapshot.to_string_lossy(), since, args.force)?
    } else {
        return Err(lvmsync::Error::InvalidArgument(
            "name a source: a snapshot (`lvmsync diff vg/snap [--since vg/older]`), or offline \
             --thin-metadata FILE, --cow-store FILE or --base OLD NEW (see lvmsync diff --help)"
                .into(),
        )
        .into());
    };
    print_changes(&changes, args.json)
}

/// Print a change set as text lines or one JSON object.
fn print_changes(changes: &ChangeSet, json: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if json {
        serde_json::to_writer(&mut out, changes)?;
        writeln!(out)?;
    } else {
        for e in changes.extents() {
            writeln!(out, "{} {} {}", e.offset, e.length, e.kind)?;
        }
        writeln!(
            out,
            "# {} extents, {} bytes, block size {}",
            changes.len(),
            changes.changed_bytes(),
            changes.block_size()
        )?;
    }
    out.flush()?;
    Ok(())
}
