//! `lvmsync apply`: apply a delta file (or `-` for stdin) to a device or image.
//!
//! A delta *file* is verified completely first, so a corrupt or truncated file writes
//! nothing at all; a pipe is verified record by record and rolled back on failure.

use super::receive::{apply_with_progress, ApplyArgs};
use clap::Args;
use lvmsync::journal::verify_stream;
use lvmsync::Error;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

/// Arguments of `lvmsync apply`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  lvmsync apply delta.lvd /dev/vg/copy --state-dir /var/lib/lvmsync")]
pub struct ApplyCmdArgs {
    /// The delta file, or `-` for stdin.
    #[arg(value_name = "DELTA")]
    pub delta: String,
    /// The destination device or image file.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

/// Run `lvmsync apply`.
pub fn run(args: &ApplyCmdArgs) -> anyhow::Result<()> {
    if args.delta == "-" {
        let input = BufReader::with_capacity(1 << 20, std::io::stdin());
        return apply_with_progress(input, "stdin", &args.dest, &args.apply);
    }
    let open = || -> anyhow::Result<BufReader<File>> {
        let f = File::open(&args.delta).map_err(|e| Error::io(&args.delta, e))?;
        Ok(BufReader::with_capacity(1 << 20, f))
    };
    if !args.apply.dry_run {
        verify_stream(open()?, &args.delta)?;
    }
    apply_with_progress(open()?, &args.delta, &args.dest, &args.apply)
}
