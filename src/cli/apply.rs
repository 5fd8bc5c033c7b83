//! `lvmsync apply`: apply a delta file (or `-` for stdin) to a device or image.
//!
//! A delta *file* is verified completely first, so a corrupt or truncated file writes
//! nothing at all (the undo journal is filled while it verifies); a pipe is verified record
//! by record and rolled back on failure.

use super::receive::{apply_file_with_progress, apply_with_progress, ApplyArgs};
use clap::Args;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Arguments of `lvmsync apply`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  lvmsync apply delta.lvd /dev/vg/copy --state-dir /var/lib/lvmsync")]
pub struct ApplyCmdArgs {
    /// The delta file, or `-` for stdin.
    #[arg(value_name = "DELTA")]
    pub delta: String,
    /// The destination device or image file. A block device is opened exclusively (O_EXCL)
    /// for the whole apply and refused (exit 4, nothing written) while it is mounted or in
    /// use (LVM/dm, md, another exclusive opener): unmount or deactivate it first.
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
    apply_file_with_progress(Path::new(&args.delta), &args.dest, &args.apply)
}
