//! The delta stream: a versioned, checksummed, zstd-compressed record format.
//!
//! Layout (all integers little-endian; details in `docs/stream-format.md`):
//!
//! ```text
//! preamble   "LVMSDLTA" (8 bytes) + version u16
//! frame*     tag u8 | len u32 | payload[len] | crc32c u32
//!            H header, then D data / Z zero / X discard / C checkpoint records, then T trailer
//! ```
//!
//! The trailer carries the record and byte counts and the root hash: blake3 over every frame
//! before the trailer, data records without their payload bytes (their fixed fields carry the
//! blake3 of the plain bytes, which the reader checks, and their CRC binds the encoding). A
//! reader therefore detects a flipped byte anywhere (frame CRC, data blake3, root hash), a
//! truncation (no trailer), and reordering or splicing (root hash).
//!
//! - [`frame`]: framing and the bounds-checked cursor shared with the undo journal.
//! - [`header`], [`record`]: payload codecs, pure over bytes.
//! - [`writer`], [`reader`]: stream serialisation and verification.
//! - [`encode`]: the sender's multi-threaded read/zero-detect/hash/compress pipeline
//!   (`prefetch`: its read-ahead hints for scattered extents).
//! - [`fingerprint`]: blake3 content identities of base and target states.
//! - [`progress`]: progress bars and JSON progress lines.

pub mod encode;
pub mod fingerprint;
pub mod frame;
pub mod header;
mod prefetch;
pub mod progress;
pub mod reader;
pub mod record;
pub mod refine;
pub mod writer;

pub use encode::{send_changes, EncodeOptions, SendSummary};
pub use header::{Fingerprint, Header};
pub use reader::{Item, StreamReader};
pub use writer::StreamWriter;

/// The first eight bytes of every stream.
pub const MAGIC: [u8; 8] = *b"LVMSDLTA";

/// The format version this build writes. Version 2's root hash covers each data record's
/// fixed fields and CRC instead of its payload bytes ([`record::absorb_frame`]).
pub const VERSION: u16 = 2;

/// The oldest format version this build still reads: version 1, whose root hash covers every
/// stream byte (delta files written by an older lvmsync still apply).
pub const OLDEST_READABLE_VERSION: u16 = 1;
