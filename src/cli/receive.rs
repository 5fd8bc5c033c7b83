//! `lvmsync receive`: apply a delta stream read from stdin, atomically through the journal.

use clap::Args;
use lvmsync::journal::resume::resume_point;
use lvmsync::journal::{apply_file, apply_stream, ApplyOptions, ApplyReport, DestPaths};
use lvmsync::stream::progress::{Progress, ProgressMode};
use lvmsync::transport::{Allow, Failure, ListenUrl, Listener, Purpose, ServerOptions, TlsFiles};
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
    /// Sync at every stream checkpoint and, if the stream is cut, keep the verified part
    /// for `--resume` (prints a resume token) instead of rolling it back.
    #[arg(long)]
    pub resumable: bool,
    /// Continue a kept partial apply with a stream from `lvmsync send --resume <token>`.
    #[arg(long, conflicts_with_all = ["force", "dry_run"])]
    pub resume: bool,
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
            resumable: self.resumable,
            resume: self.resume,
            resume_if_continuation: false,
        }
    }
}

/// Arguments of `lvmsync receive`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lvmsync send --base old.img new.img --to - | ssh backup lvmsync receive /dev/vg/copy
  lvmsync receive --listen tls://0.0.0.0:7000 --cert s.pem --key s.key --client-ca ca.pem \\
      --allow copy=/dev/vg/copy")]
pub struct ReceiveArgs {
    /// The destination device or image file (the stream is read from stdin). A block device is opened exclusively (O_EXCL)
    /// for the whole apply and refused (exit 4, nothing written) while it is mounted or in
    /// use (LVM/dm, md, another exclusive opener): unmount or deactivate it first.
    #[arg(value_name = "DEST", required_unless_present = "listen")]
    pub dest: Option<PathBuf>,
    /// Serve senders on `tls://addr:port`, `quic://addr:port` or `tcp://127.0.0.1:port`.
    #[arg(long, value_name = "URL", conflicts_with = "dest")]
    pub listen: Option<String>,
    /// Map a name senders ask for to a device: `<name>=<device-or-file>`, repeatable.
    #[arg(long, value_name = "NAME=DEV", requires = "listen")]
    pub allow: Vec<String>,
    /// This server's certificate (PEM).
    #[arg(long, value_name = "PEM", requires = "listen")]
    pub cert: Option<PathBuf>,
    /// This server's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "listen")]
    pub key: Option<PathBuf>,
    /// The CA client certificates must be signed by (PEM).
    #[arg(long, value_name = "PEM", requires = "listen")]
    pub client_ca: Option<PathBuf>,
    /// Serve one sender, then exit with its outcome.
    #[arg(long, requires = "listen")]
    pub once: bool,
    #[command(flatten)]
    pub apply: ApplyArgs,
}

/// Apply `input` to `dest` with progress, then print the outcome.
pub fn apply_with_progress(
    input: impl Read + Send,
    name: &str,
    dest: &std::path::Path,
    args: &ApplyArgs,
) -> anyhow::Result<()> {
    apply_with_options(input, name, dest, &args.options(), args.progress)
}

/// [`apply_with_progress`] with explicit library options.
fn apply_with_options(
    input: impl Read + Send,
    name: &str,
    dest: &std::path::Path,
    opts: &ApplyOptions,
    mode: ProgressMode,
) -> anyhow::Result<()> {
    run_with_progress(name, dest, mode, |p| {
        apply_stream(input, name, dest, opts, p)
    })
}

/// Apply the delta file `delta` to `dest` with progress (verified whole before any write),
/// then print the outcome.
pub fn apply_file_with_progress(
    delta: &std::path::Path,
    dest: &std::path::Path,
    args: &ApplyArgs,
) -> anyhow::Result<()> {
    let name = delta.display().to_string();
    run_with_progress(&name, dest, args.progress, |p| {
        apply_file(delta, dest, &args.options(), p)
    })
}

/// Run one apply with a progress display, then print its outcome.
fn run_with_progress(
    name: &str,
    dest: &std::path::Path,
    mode: ProgressMode,
    apply: impl FnOnce(&mut dyn FnMut(u64, u64)) -> lvmsync::Result<ApplyReport>,
) -> anyhow::Result<()> {
    tracing::info!(dest = %dest.display(), from = name, "{}: applying the stream from {name}", dest.display());
    let mut progress = Progress::new(mode, "apply");
    let report = apply(&mut |d, t| progress.update(d, t))?;
    progress.finish();
    print_report(&report, dest);
    Ok(())
}

fn print_report(r: &ApplyReport, dest: &std::path::Path) {
    let d = dest.display();
    if r.recovery != lvmsync::journal::Recovery::Nothing {
        tracing::info!(dest = %d, recovery = %r.recovery, "{d}: {}", r.recovery);
    }
    let verb = if r.dry_run { "would write" } else { "wrote" };
    tracing::info!(
        dest = %d,
        data_bytes = r.data_bytes,
        records = r.data_records,
        zeroed_bytes = r.zeroed_bytes,
        base = %r.header.base,
        target = %r.header.target,
        dry_run = r.dry_run,
        "{d}: {verb} {} data bytes in {} records and zeroed {} bytes; state {} -> {}",
        r.data_bytes,
        r.data_records,
        r.zeroed_bytes,
        r.header.base,
        r.header.target
    );
}

/// Run `lvmsync receive`.
pub fn run(args: &ReceiveArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.listen {
        return serve(args, url);
    }
    let dest = args
        .dest
        .as_ref()
        .expect("clap requires DEST without --listen");
    let stdin = std::io::stdin();
    let input = std::io::BufReader::with_capacity(1 << 20, stdin);
    apply_with_progress(input, "stdin", dest, &args.apply)
}

/// Accept senders one after another and apply each stream to the device its name maps to.
fn serve(args: &ReceiveArgs, url: &str) -> anyhow::Result<()> {
    let url: ListenUrl = url.parse()?;
    let allow = args
        .allow
        .iter()
        .map(|a| a.parse::<Allow>())
        .collect::<Result<Vec<_>, _>>()?;
    let opts = ServerOptions {
        tls: TlsFiles {
            cert: args.cert.clone(),
            key: args.key.clone(),
            ca: args.client_ca.clone(),
        },
        allow,
    };
    // Network transfers are resumable: checkpoints are made durable, a cut transfer keeps its
    // verified part, each Accept offers the sender that checkpoint, and a continuation stream
    // (send --resume) picks it up; any other stream rolls the partial apply back first.
    let state_dir = args.apply.state_dir.clone();
    let lookup = move |dev: &std::path::Path| {
        let paths = DestPaths::new(&state_dir, dev).ok()?;
        resume_point(&paths).ok().flatten().map(|cp| cp.encode())
    };
    let listener = Listener::bind(&url, &opts)?.with_resume_points(Box::new(lookup));
    let mut apply_opts = args.apply.options();
    apply_opts.resumable = true;
    apply_opts.resume_if_continuation = true;
    tracing::info!(listen = %listener.local_addr(), "listening on {}", listener.local_addr());
    loop {
        let session = match listener.accept() {
            Ok(s) => s,
            Err(e) if args.once => return Err(e.into()),
            Err(e) => {
                tracing::warn!("refused a client: {e}");
                continue;
            }
        };
        let name = format!("client {} ({})", session.peer, session.name);
        // `lvmsync verify` against this receiver: hash queries, maybe a journaled repair.
        let result = if session.purpose == Purpose::HashQueries {
            super::verify::answer(session, &apply_opts, args.apply.progress)
        } else {
            let input = std::io::BufReader::with_capacity(1 << 20, session.data);
            let result = apply_with_options(
                input,
                &name,
                &session.device,
                &apply_opts,
                args.apply.progress,
            );
            let verdict = result
                .as_ref()
                .map(|_| ())
                .map_err(|e| Failure::new(super::exit::class_of(e), super::one_line(e)));
            if let Err(e) = session.acks.finish(verdict) {
                tracing::warn!("{name}: {e}");
            }
            result
        };
        match result {
            Err(e) if args.once => return Err(e),
            Err(e) => tracing::error!("{name}: {}", super::one_line(&e)),
            Ok(()) if args.once => return Ok(()),
            Ok(()) => {}
        }
    }
}
