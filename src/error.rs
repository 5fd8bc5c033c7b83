//! The library's one error type.
//!
//! Every message names the device or file involved and, where there is one, the fix
//! (for example "run a full sync"), because the person reading it is a storage admin
//! at a terminal, not a developer with a debugger.

use std::path::PathBuf;

/// Everything that can go wrong in the lvmsync library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file or device.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or device being read or written.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },

    /// Metadata (COW store, thin-pool metadata, ...) that does not parse or fails a check.
    #[error("{source_name}: corrupt {what}: {detail}")]
    Corrupt {
        /// The device or file the metadata came from.
        source_name: String,
        /// Which structure was bad ("thin-pool metadata", "snapshot exception store", ...).
        what: &'static str,
        /// What exactly was wrong, and where.
        detail: String,
    },

    /// Input that is well-formed but that lvmsync cannot use, with what to do instead.
    #[error("{source_name}: {reason}")]
    Unusable {
        /// The device or file concerned.
        source_name: String,
        /// Why it can't be used and what to do about it.
        reason: String,
    },

    /// Invalid arguments: ranges that overlap, block sizes that are not powers of two, ...
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A device-mapper or lvm2 operation failed.
    #[error("{device}: {detail}")]
    Device {
        /// The dm or LVM name of the device.
        device: String,
        /// What failed, and the fix where one is known.
        detail: String,
    },

    /// A delta stream or undo journal that fails a check: truncated, corrupted, tampered
    /// with, or of a format version this build does not read.
    #[error("{stream}: {detail}")]
    Integrity {
        /// The stream or journal ("stdin", a path).
        stream: String,
        /// What failed, where, and what was done about the destination.
        detail: String,
    },

    /// The destination's recorded state is not the state a delta applies to.
    #[error("{dest}: {detail}")]
    BaseMismatch {
        /// The destination device or file.
        dest: String,
        /// Both fingerprints and the fix (apply the missing deltas, a full sync, or --force).
        detail: String,
    },

    /// The destination cannot take the stream: too small, missing, no journal space, ...
    #[error("{dest}: {detail}")]
    Destination {
        /// The destination device or file.
        dest: String,
        /// What is wrong and the fix.
        detail: String,
    },

    /// A feature whose issue has not landed yet.
    #[error("{0} is not implemented yet")]
    NotImplemented(&'static str),

    /// A byte transport (ssh, tls://, quic://, tcp://) failed or the peer refused us.
    #[error("{endpoint}: {detail}")]
    Transport {
        /// The destination or listen address, or the peer, as the user named it.
        endpoint: String,
        /// What went wrong, and the fix where one is known.
        detail: String,
    },

    /// A failure at a remote `endpoint` (a receiver's verdict, a remote lvmsync's exit
    /// status), kept in that side's class so this side exits with the code it had there.
    /// The remote text is quoted as it was, with nothing put in front of it (a remote
    /// usage error already says "invalid argument").
    #[error("{endpoint}: {detail}")]
    Remote {
        /// The remote side's class.
        class: ErrorClass,
        /// The destination as the user named it.
        endpoint: String,
        /// What the remote side said, quoted.
        detail: String,
    },

    /// A bug: an internal thread panicked. The operation's own failure, when it had one
    /// besides, decides the class (a corrupt stream stays exit 5); without one the class is
    /// [`ErrorClass::Internal`].
    #[error("{}", panicked_text(what, during.as_deref()))]
    Panicked {
        /// What panicked, naming the file or device it worked on.
        what: String,
        /// The operation's own failure, not caused by the panic, if there was one.
        during: Option<Box<Error>>,
    },
}

/// [`Error::Panicked`]'s text: the operation's own failure first, when there is one.
fn panicked_text(what: &str, during: Option<&Error>) -> String {
    const BUG: &str = "a bug in lvmsync, please report it";
    match during {
        Some(e) => format!("{e} (and {what} panicked: {BUG})"),
        None => format!("{what} panicked: {BUG}"),
    }
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap an I/O error with the path it happened on. An I/O error that carries an [`Error`]
    /// is that error: a network writer that failed because the receiver refused the stream
    /// returns the receiver's classified verdict that way, naming the destination itself.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        match source.downcast::<Error>() {
            Ok(inner) => inner,
            Err(source) => Error::Io {
                path: path.into(),
                source,
            },
        }
    }

    /// The error's class: what the `lvmsync` command's exit code says about it, and what a
    /// receiver tells a network sender about its failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::NotImplemented(_) | Error::InvalidArgument(_) => ErrorClass::Usage,
            Error::Corrupt { .. } | Error::Unusable { .. } => ErrorClass::Source,
            Error::Destination { .. } => ErrorClass::Destination,
            Error::Integrity { .. } => ErrorClass::Integrity,
            Error::Transport { .. } => ErrorClass::Transport,
            Error::BaseMismatch { .. } => ErrorClass::BaseMismatch,
            // Out of space (a full journal directory mid-apply, a full filesystem under a
            // destination file or a delta file): the destination can't take the stream, the
            // class the journal-space check before an apply gives.
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                ErrorClass::Destination
            }
            Error::Io { .. } | Error::Device { .. } => ErrorClass::Other,
            Error::Remote { class, .. } => *class,
            Error::Panicked { during, .. } => {
                during.as_ref().map_or(ErrorClass::Internal, |e| e.class())
            }
        }
    }

    /// An error of `class` that happened at a remote `endpoint` (a receiver's verdict, a remote
    /// lvmsync's exit status), so the sender's exit code is the one the receiver had.
    pub fn remote(class: ErrorClass, endpoint: &str, detail: String) -> Self {
        Error::Remote {
            class,
            endpoint: endpoint.to_string(),
            detail,
        }
    }
}

/// What kind of failure an [`Error`] is, as scripts see it: the value is `lvmsync`'s exit
/// code for it, and also the class byte a network receiver sends after a failed Status
/// (docs/transport.md), so a remote refusal exits like the same refusal at a local receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorClass {
    /// Anything else (I/O, device-mapper, lvm2).
    Other = 1,
    /// Bad usage, or a subcommand that is not implemented yet.
    Usage = 2,
    /// The source is unusable or its metadata corrupt.
    Source = 3,
    /// The destination can't take the stream (missing, too small, busy, no journal space).
    Destination = 4,
    /// A stream or journal failed verification.
    Integrity = 5,
    /// A network transport failed.
    Transport = 6,
    /// The destination does not hold the delta's base state.
    BaseMismatch = 7,
    /// A bug in lvmsync (an apply's journaling thread panicked) with no other failure to report.
    Internal = 8,
}

impl ErrorClass {
    /// The class with exit code (and wire value) `code`; `None` for any other value.
    pub fn from_code(code: u8) -> Option<Self> {
        use ErrorClass::*;
        [
            Other,
            Usage,
            Source,
            Destination,
            Integrity,
            Transport,
            BaseMismatch,
            Internal,
        ]
        .into_iter()
        .find(|c| *c as u8 == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running out of space is the destination's class (4), as the journal-space check
    /// before an apply says it; other I/O errors stay "other" (1).
    #[test]
    fn out_of_space_is_the_destination_class() {
        let io = |code| Error::io("/j", std::io::Error::from_raw_os_error(code));
        assert_eq!(io(nix::libc::ENOSPC).class(), ErrorClass::Destination);
        assert_eq!(io(nix::libc::EIO).class(), ErrorClass::Other);
    }
}
