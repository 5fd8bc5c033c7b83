//! `lvmsync recover`: finish or undo an interrupted apply (also run by receive/apply).

use clap::Args;
use lvmsync::journal::dest::Destination;
use lvmsync::journal::undo::drop_spare;
use lvmsync::journal::{recover, DestPaths};
use std::path::PathBuf;

/// Arguments of `lvmsync recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The destination device or image file (a block device must not be mounted or in use:
    /// recovery writes it, and refuses a busy one with exit 4).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Directory of undo journals and destination state files.
    #[arg(long, default_value = lvmsync::journal::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Also delete the spare journal a finished apply keeps for the next one to reuse
    /// (frees its space, up to the size of the largest recent apply's undo journal).
    #[arg(long)]
    pub drop_spare: bool,
}

/// Run `lvmsync recover`.
pub fn run(args: &RecoverArgs) -> anyhow::Result<()> {
    // Claimed before the lock file is made: a busy device is refused with nothing written.
    let held = Destination::claim(&args.dest)?;
    let paths = DestPaths::new(&args.state_dir, &args.dest)?;
    let _lock = paths.lock()?;
    let outcome = recover(&paths, held.as_ref())?;
    println!("{}: {outcome}", args.dest.display());
    if args.drop_spare && drop_spare(&paths)? {
        println!("{}: spare journal deleted", args.dest.display());
    }
    Ok(())
}
