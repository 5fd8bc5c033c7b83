//! Documented exit codes, so scripts can tell a bad argument from a corrupt stream.

use lvmsync::ErrorClass;
use std::process::ExitCode;

/// The exit statuses lvmsync uses; listed in `lvmsync --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Any other failure.
    Failure = 1,
    /// Bad usage, or a subcommand that is not implemented yet.
    Usage = 2,
    /// The source (snapshot, metadata, image) is unusable or corrupt.
    Source = 3,
    /// The destination can't take the stream (missing, too small, mounted or in use, no
    /// journal space).
    Destination = 4,
    /// A stream or journal failed verification (truncated, corrupted, unknown version).
    Integrity = 5,
    /// A network transport failed.
    Transport = 6,
    /// The destination does not hold the delta's base state.
    BaseMismatch = 7,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Pick the exit code for an error by the library error at the root of its chain.
pub fn classify(err: &anyhow::Error) -> Exit {
    match class_of(err) {
        ErrorClass::Other => Exit::Failure,
        ErrorClass::Usage => Exit::Usage,
        ErrorClass::Source => Exit::Source,
        ErrorClass::Destination => Exit::Destination,
        ErrorClass::Integrity => Exit::Integrity,
        ErrorClass::Transport => Exit::Transport,
        ErrorClass::BaseMismatch => Exit::BaseMismatch,
    }
}

/// The class of the library error at the root of `err`'s chain (`Other` when there is none):
/// what a listening receiver reports to the sender along with its error text.
pub fn class_of(err: &anyhow::Error) -> ErrorClass {
    err.downcast_ref::<lvmsync::Error>()
        .map_or(ErrorClass::Other, lvmsync::Error::class)
}

/// The help text's exit-code table.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other failure (I/O, device-mapper, lvm2)
  2  usage error, or a subcommand that is not implemented yet
  3  the source is unusable or its metadata is corrupt (run a full sync)
  4  the destination can't take the stream (missing, too small, mounted or in use, no
     journal space)
  5  a delta stream or journal failed verification (truncated, corrupted, unknown version);
     the destination was left unchanged (with --resumable: kept up to its last checkpoint)
  6  a network transport failed
  7  the destination does not hold the delta's base state (apply missing deltas or --force)
A send to a remote receiver that refuses the stream exits with the receiver's code (4, 5, 7, ...).";
