//! Documented exit codes, so scripts can tell a bad argument from a corrupt stream.

use lvmsync::ErrorClass;
use std::process::ExitCode;

/// How a run ends: success, or the class of the error that ended it, whose value is the
/// exit code (the codes are listed in `lvmsync --help`, [`EXIT_CODES_HELP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success: exit 0.
    Ok,
    /// Failure of this class: exit with its code (1 to 8).
    Failed(ErrorClass),
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failed(class) => ExitCode::from(class as u8),
        }
    }
}

/// Pick the exit code for an error by the library error at the root of its chain.
pub fn classify(err: &anyhow::Error) -> Exit {
    Exit::Failed(class_of(err))
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
     journal space, or a filesystem ran out of space while writing)
  5  a delta stream or journal failed verification (truncated, corrupted, unknown version);
     the destination was left unchanged (with --resumable: kept up to its last checkpoint)
  6  a network transport failed
  7  the destination does not hold the delta's base state (apply missing deltas or --force)
  8  internal error: a bug in lvmsync (an apply's journaling thread panicked and nothing else failed)
A send to a remote receiver that refuses the stream exits with the receiver's code (4, 5, 7, ...),
and so does a verify --repair whose remote side fails the repair.";
