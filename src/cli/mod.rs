//! Argument parsing and dispatch. Each subcommand lives in its own file.

mod apply;
mod diff;
mod exit;
mod log;
mod planned;
mod probe;
mod receive;
mod recover;
mod rollback;
mod send;
mod verify;

use clap::{Parser, Subcommand};
use exit::Exit;
use std::process::ExitCode;

/// Mirror Linux block devices by their changes only.
///
/// lvmsync reads which extents changed straight from device-mapper metadata (classic COW
/// snapshots and thin snapshots), streams just those, and commits them atomically at the
/// destination.
#[derive(Debug, Parser)]
#[command(
    name = "lvmsync",
    version = lvmsync::journal::test_hooks::VERSION,
    after_help = exit::EXIT_CODES_HELP)]
struct Cli {
    /// Log lines on stderr: `text` for people, `json` (one object a line: timestamp, level,
    /// fields) for machines. LVMSYNC_LOG=debug shows more.
    #[arg(long, global = true, value_enum, default_value_t = log::LogFormat::Text)]
    log_format: log::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what lvmsync sees of a device: kind, size, dm name, UUIDs, origin/pool, chunk size
    Probe(probe::ProbeArgs),
    /// List the extents that changed, from snapshot metadata or a block-hash compare
    Diff(diff::DiffArgs),
    /// Write a delta stream of the changes to a file, stdout, ssh, tls:// or quic://
    Send(send::SendArgs),
    /// Apply a delta stream read from stdin to a device or file, atomically (never into a
    /// mounted or in-use device)
    Receive(receive::ReceiveArgs),
    /// Apply a delta file to a device or file, atomically (never into a mounted or in-use
    /// device)
    Apply(apply::ApplyCmdArgs),
    /// Compare source and destination by hash tree and list (or repair) differing ranges
    Verify(verify::VerifyArgs),
    /// Replicate continuously into an NBD server
    Mirror(planned::PlannedArgs),
    /// Serve a destination over NBD
    Serve(planned::PlannedArgs),
    /// Mount a delta, snapshot or point-in-time view as a directory of changed-extent files
    View(planned::PlannedArgs),
    /// Restore an earlier state of a destination from its snapback journal
    Rollback(rollback::RollbackArgs),
    /// Finish or undo an interrupted apply
    Recover(recover::RecoverArgs),
}

/// Parse arguments, run the subcommand, and turn its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // With --log-format=json even a usage error is a JSON line.
        Err(e) if e.use_stderr() && log::json_requested(std::env::args()) => {
            log::init(log::LogFormat::Json);
            tracing::error!("{}", e.render().to_string().trim_end());
            return Exit::Failed(lvmsync::ErrorClass::Usage).into();
        }
        Err(e) => e.exit(),
    };
    log::init(cli.log_format);
    let result = match &cli.command {
        Command::Probe(a) => probe::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Send(a) => send::run(a),
        Command::Receive(a) => receive::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Mirror(a) => planned::run("lvmsync mirror", a),
        Command::Serve(a) => planned::run("lvmsync serve", a),
        Command::View(a) => planned::run("lvmsync view", a),
        Command::Rollback(a) => rollback::run(a),
        Command::Recover(a) => recover::run(a),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(err) => {
            tracing::error!("{}", one_line(&err));
            exit::classify(&err).into()
        }
    }
}

/// The error and its causes on one line, `: `-separated, leaving out a cause whose text the
/// line already holds: the library's I/O errors print their OS error themselves ("dev:
/// No such file or directory") and also carry it as their source, which `{:#}` would
/// print a second time.
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
