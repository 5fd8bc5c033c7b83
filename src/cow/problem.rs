//! What can be wrong with an exception store, before we know which device it came from.
//!
//! The pure parsers return a [`StoreProblem`]; the reader that knows the device name turns it
//! into a [`crate::Error`] whose message names the device and says what to do.

use crate::error::Error;

/// The fix for a store lvmsync cannot trust: its list of changes is unknown, so every byte
/// must be sent again.
pub const FULL_RESYNC: &str =
    "the changes since this snapshot are unknown: run a full resync of the volume";

/// One reason an exception store was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreProblem {
    /// The store ends before a structure it must contain.
    Truncated {
        /// Bytes the structure needs to end at.
        needed: u64,
        /// Bytes the store has.
        have: u64,
        /// Which structure ("the header", "metadata area 3").
        what: String,
    },
    /// Magic 0: the kernel never formatted this store (or the snapshot is transient).
    Unformatted,
    /// Some other magic: not a persistent exception store.
    BadMagic(u32),
    /// Valid flag 0: the kernel dropped the snapshot (it overflowed or hit an I/O error).
    Invalidated,
    /// A version other than 1.
    UnknownVersion(u32),
    /// Chunk size (sectors) zero, not a power of two, or beyond the kernel's limit.
    BadChunkSize(u64),
    /// An exception whose data chunk lies at or past the end of the store.
    NewChunkOutside {
        /// Metadata area index.
        area: u64,
        /// Entry index within the area.
        entry: u64,
        /// The bad data chunk index.
        new_chunk: u64,
        /// Chunks the store holds.
        store_chunks: u64,
    },
    /// An exception whose data chunk is the header or a metadata area.
    NewChunkIsMetadata {
        /// Metadata area index.
        area: u64,
        /// Entry index within the area.
        entry: u64,
        /// The bad data chunk index.
        new_chunk: u64,
    },
    /// Two exceptions for the same origin chunk.
    DuplicateOldChunk(u64),
    /// An origin chunk whose byte range does not fit in 64 bits.
    OldChunkTooLarge(u64),
    /// A live store's current metadata area never read the same twice in a row.
    Unstable {
        /// Metadata area index.
        area: u64,
        /// Reads tried.
        reads: u32,
    },
}

impl std::fmt::Display for StoreProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use StoreProblem::*;
        match self {
            Truncated { needed, have, what } => write!(
                f,
                "store ends mid-structure: {what} needs {needed} bytes, the store has {have}"
            ),
            Unformatted => f.write_str(
                "magic is 0: the store was never formatted by dm-snapshot (or the snapshot is \
                 transient, which keeps no on-disk list)",
            ),
            BadMagic(m) => write!(f, "magic {m:#010x} is not \"SnAp\" (0x70416e53)"),
            Invalidated => f.write_str(
                "the snapshot is marked invalid (it overflowed or hit an I/O error) and has \
                 lost track of its changes",
            ),
            UnknownVersion(v) => write!(f, "on-disk version {v} is unknown (only 1 exists)"),
            BadChunkSize(c) => write!(
                f,
                "chunk size {c} sectors is not a power of two between 1 and 2^21"
            ),
            NewChunkOutside {
                area,
                entry,
                new_chunk,
                store_chunks,
            } => write!(
                f,
                "area {area} entry {entry}: data chunk {new_chunk} is past the end of the \
                 store ({store_chunks} chunks)"
            ),
            NewChunkIsMetadata {
                area,
                entry,
                new_chunk,
            } => write!(
                f,
                "area {area} entry {entry}: data chunk {new_chunk} is the header or a metadata area"
            ),
            DuplicateOldChunk(c) => write!(f, "origin chunk {c} has two exceptions"),
            OldChunkTooLarge(c) => write!(f, "origin chunk {c} lies beyond a 64-bit device"),
            Unstable { area, reads } => {
                write!(f, "metadata area {area} changed on each of {reads} reads")
            }
        }
    }
}

impl StoreProblem {
    /// The library error for this problem in the store read from `source_name`, with the fix.
    pub fn into_error(self, source_name: &str) -> Error {
        match self {
            StoreProblem::Unformatted | StoreProblem::Invalidated => Error::Unusable {
                source_name: source_name.to_string(),
                reason: format!("{self}; {FULL_RESYNC}"),
            },
            StoreProblem::Unstable { .. } => Error::Unusable {
                source_name: source_name.to_string(),
                reason: format!(
                    "{self}: the snapshot is being written too fast to read its list; retry \
                     when writes are quieter"
                ),
            },
            _ => Error::Corrupt {
                source_name: source_name.to_string(),
                what: "snapshot exception store",
                detail: format!("{self}; {FULL_RESYNC}"),
            },
        }
    }
}
