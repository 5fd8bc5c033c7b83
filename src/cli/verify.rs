//! `lvmsync verify`: compare source and destination block by block (blake3 of each block,
//! through the block-hash walker), list the ranges that differ, and with `--repair` send
//! exactly those ranges through the journaled apply. Repair also seeds a destination that
//! already holds an old full copy: only its differing blocks travel.

use super::receive::ApplyArgs;
use super::send::{clip_to, device_size};
use clap::Args;
use lvmsync::journal::{apply_stream, DestPaths};
use lvmsync::stream::fingerprint::content_fingerprint;
use lvmsync::stream::progress::Progress;
use lvmsync::stream::{send_changes, EncodeOptions, Fingerprint, Header};
use lvmsync::units::Bytes;
use lvmsync::Error;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

/// Arguments of `lvmsync verify`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lvmsync verify disk.img /backup/disk.img            # list differing ranges (exit 4 if any)
  lvmsync verify disk.img /dev/vg/copy --repair       # and fix them, journaled

Output: one differing range a line, `<offset_bytes> <length_bytes>`, then a summary line.")]
pub struct VerifyArgs {
    /// The source image or device (the truth).
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// The destination image or device to check.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Block size in bytes for the comparison.
    #[arg(long, default_value_t = 65536)]
    pub block_size: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Send the differing blocks to the destination (journaled, atomic).
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

/// Run `lvmsync verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let size = device_size(&args.source)?;
    let dest_size = device_size(&args.dest)?;
    let found =
        lvmsync::blockhash::compare_files(&args.dest, &args.source, Bytes(args.block_size))?;
    let diff = clip_to(&found, size)?;
    if args.json {
        println!("{}", serde_json::to_string(&diff)?);
    } else {
        for e in diff.extents() {
            println!("{} {}", e.offset, e.length);
        }
        println!(
            "# {} differing ranges, {} bytes, block size {}",
            diff.len(),
            diff.changed_bytes(),
            args.block_size
        );
    }
    if diff.is_empty() {
        return Ok(());
    }
    if !args.repair {
        return Err(Error::Destination {
            dest: args.dest.display().to_string(),
            detail: format!(
                "differs from {} in {} ranges ({} bytes); run `lvmsync verify --repair` to fix",
                args.source.display(),
                diff.len(),
                diff.changed_bytes()
            ),
        }
        .into());
    }
    if dest_size < size && !args.apply.grow {
        return Err(Error::Destination {
            dest: args.dest.display().to_string(),
            detail: format!("is smaller than the source ({size} bytes); pass --grow"),
        }
        .into());
    }
    // The repair stream has no base: the comparison itself established what differs.
    let header = Header {
        source: args.source.display().to_string(),
        source_uuid: String::new(),
        device_size: Bytes(size),
        base_size: Bytes(0),
        block_size: Bytes(args.block_size),
        base: Fingerprint::NONE,
        target: content_fingerprint(&args.source, Bytes(size))?,
        created_unix: lvmsync::journal::state::now_unix(),
        touched_bytes: diff.changed_bytes(),
    };
    let paths = DestPaths::new(&args.apply.state_dir, &args.dest)?;
    let spool = paths.journal.with_extension("repair.lvd");
    let name = spool.display().to_string();
    let file = File::create(&spool).map_err(|e| Error::io(&spool, e))?;
    let out = BufWriter::new(file);
    let opts = EncodeOptions::default();
    let sent = send_changes(
        &args.source,
        &diff,
        &header,
        out,
        &name,
        opts,
        &mut |_, _| {},
    );
    let result = sent.and_then(|(out, _)| {
        drop(out);
        let input = BufReader::new(File::open(&spool).map_err(|e| Error::io(&spool, e))?);
        let mut progress = Progress::new(args.apply.progress, "repair");
        let mut opts = args.apply.options();
        opts.force = true;
        let r = apply_stream(input, &name, &args.dest, &opts, &mut |d, t| {
            progress.update(d, t)
        });
        progress.finish();
        r
    });
    let _ = std::fs::remove_file(&spool);
    let report = result?;
    eprintln!(
        "lvmsync: {}: repaired {} bytes in {} ranges; now {}",
        args.dest.display(),
        report.data_bytes + report.zeroed_bytes,
        diff.len(),
        report.header.target
    );
    Ok(())
}
