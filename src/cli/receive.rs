//! `lvmsync receive`: apply a delta stream read from stdin, atomically through the journal.

use clap::Args;
use lvmsync::journal::{apply_stream, ApplyOptions, ApplyReport};
use lvmsync::stream::progress::{Progress, ProgressMode};
use std::io::Read;
use std::path::PathBuf;

/// Options shared by `receive` and `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Directory for undo journals and destination state files.
    #[arg(long, default_value = lvmsync::journal::DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Apply even if the destination does not hold the delta's base state.
    #[arg(long)]
    pub force: bool,
    /// Grow a destination file smaller than the stream's device (LVs: use lvextend).
    #[arg(long)]
    pub grow: bool,
    /// Verify the stream and print what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress display: auto, bar, json or none.
    #[arg(long, default_value = "auto")]
    pub progress: ProgressMode,
    /// Keep each apply's undo journal in DIR, so `lvmsync rollback` can restore earlier states.
    #[arg(long, value_name = "DIR")]
    pub snapback: Option<PathBuf>,
    /// Benchmarks only: write in place without the undo journal (NOT crash-safe).
    #[arg(long, hide = true)]
    pub unsafe_no_journal: bool,
}

impl ApplyArgs {
    /// The library options.
    pub fn options(&self) -> ApplyOptions {
        ApplyOptions {
            state_dir: self.state_dir.clone(),
            force: self.force,
            grow: self.grow,
            dry_run: self.dry_run,
            unsafe_no_journal: self.unsafe_no_journal,
            snapback: self.snapback.clone(),
        }
    }
}

/// Arguments of `lvmsync receive`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  lvmsync send --base old.img new.img --to - | ssh backup lvmsync receive /dev/vg/copy")]
pub struct ReceiveArgs {
    /// The destination device or image file.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

/// Apply `input` to `dest` with progress, then print the outcome.
pub fn apply_with_progress(
    input: impl Read,
    name: &str,
    dest: &std::path::Path,
    args: &ApplyArgs,
) -> anyhow::Result<()> {
    let mut progress = Progress::new(args.progress, "apply");
    let report = apply_stream(input, name, dest, &args.options(), &mut |d, t| {
        progress.update(d, t)
    })?;
    progress.finish();
    print_report(&report, dest);
    Ok(())
}

fn print_report(r: &ApplyReport, dest: &std::path::Path) {
    if r.recovery != lvmsync::journal::Recovery::Nothing {
        eprintln!("lvmsync: {}: {}", dest.display(), r.recovery);
    }
    let verb = if r.dry_run { "would write" } else { "wrote" };
    eprintln!(
        "lvmsync: {}: {verb} {} data bytes in {} records and zeroed {} bytes; state {} -> {}",
        dest.display(),
        r.data_bytes,
        r.data_records,
        r.zeroed_bytes,
        r.header.base,
        r.header.target
    );
}

/// Run `lvmsync receive`.
pub fn run(args: &ReceiveArgs) -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let input = std::io::BufReader::with_capacity(1 << 20, stdin);
    apply_with_progress(input, "stdin", &args.dest, &args.apply)
}
