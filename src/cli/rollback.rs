//! `lvmsync rollback`: restore an earlier state of a destination from its snapback chain.
//!
//! Each step converts the newest undo image into a delta stream and applies it through the
//! journaled receiver (atomic, crash-safe, base-checked), then drops the consumed image.

use super::receive::ApplyArgs;
use clap::Args;
use lvmsync::journal::dest::Destination;
use lvmsync::journal::snapback::{chain, to_stream, SnapPoint};
use lvmsync::journal::{apply_stream_held, DestPaths};
use lvmsync::stream::progress::Progress;
use lvmsync::Error;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

/// Arguments of `lvmsync rollback`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lvmsync apply d1.lvd copy.img --snapback /var/lib/lvmsync/snap   # keep undo images
  lvmsync rollback copy.img --snapback /var/lib/lvmsync/snap --list
  lvmsync rollback copy.img --snapback /var/lib/lvmsync/snap        # one step back
  lvmsync rollback copy.img --snapback /var/lib/lvmsync/snap --to 1 # back to before image 1")]
pub struct RollbackArgs {
    /// The destination device or image file (a block device must not be mounted or in use:
    /// refused with exit 4, nothing written; it is held exclusively, O_EXCL, through every
    /// step).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Roll back through this image (sequence number, or a prefix of the state it restores).
    #[arg(long, value_name = "POINT")]
    pub to: Option<String>,
    /// List the chain and change nothing.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

fn matches(p: &SnapPoint, point: &str) -> bool {
    point.parse::<u64>().ok() == Some(p.seq)
        || (point.len() >= 8 && p.head.base.to_hex().starts_with(point))
}

/// Run `lvmsync rollback`.
pub fn run(args: &RollbackArgs) -> anyhow::Result<()> {
    // Claimed before anything is created, and held through every step: nobody can mount the
    // device while a step's stream is spooled or between two steps. (`--list` writes nothing.)
    let held = if args.list {
        None
    } else {
        Some(
            Destination::claim(&args.dest)?.ok_or_else(|| Error::Destination {
                dest: args.dest.display().to_string(),
                detail: "does not exist, so there is nothing to roll back".into(),
            })?,
        )
    };
    let paths = DestPaths::new(&args.apply.state_dir, &args.dest)?;
    let dir = args.apply.snapback.as_ref().ok_or_else(|| {
        Error::InvalidArgument("name the snapback directory with --snapback <DIR>".into())
    })?;
    let points = chain(dir, &paths.canonical)?;
    let Some(held) = held else {
        for p in &points {
            println!(
                "{:6}  restores {}  (from {}, {} bytes, applied at {})",
                p.seq, p.head.base, p.head.target, p.bytes, p.head.created_unix
            );
        }
        return Ok(());
    };
    let first = match &args.to {
        None => points.len().checked_sub(1),
        Some(point) => points.iter().position(|p| matches(p, point)),
    }
    .ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no snapback image {} for {} in {}; see --list",
            args.to.as_deref().unwrap_or("at all"),
            args.dest.display(),
            dir.display()
        ))
    })?;
    for p in points[first..].iter().rev() {
        let spool = paths.journal.with_extension("rollback.lvd");
        let file = File::create(&spool).map_err(|e| Error::io(&spool, e))?;
        to_stream(p, BufWriter::new(file))?;
        let name = spool.display().to_string();
        let mut opts = args.apply.options();
        opts.snapback = None;
        let mut progress = Progress::new(args.apply.progress, "rollback");
        let input = BufReader::new(File::open(&spool).map_err(|e| Error::io(&spool, e))?);
        let r = apply_stream_held(input, &name, &held, &opts, &mut |d, t| {
            progress.update(d, t)
        });
        progress.finish();
        let _ = std::fs::remove_file(&spool);
        r?;
        // A stream can't shrink its destination: cut a grown image file back here.
        if !held.is_block() && held.size()? > p.head.size_before {
            held.set_len(p.head.size_before)?;
            held.sync()?;
        }
        std::fs::remove_file(&p.path).map_err(|e| Error::io(&p.path, e))?;
        tracing::info!(
            dest = %args.dest.display(),
            image = p.seq,
            bytes = p.bytes,
            now = %p.head.base,
            "{}: rolled back image {} ({} bytes); now {}",
            args.dest.display(),
            p.seq,
            p.bytes,
            p.head.base
        );
    }
    Ok(())
}
