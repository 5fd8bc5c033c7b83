//! The journaled receiver: apply a delta stream so the destination is never left torn.
//!
//! - [`claim`]: exclusive opening of destination block devices (refused while mounted or in use).
//! - [`dest`]: the destination device or file.
//! - [`format`]: the undo journal's frames (stream framing, own tags).
//! - [`undo`]: writing the journal in crash-safe order.
//! - [`span`]: which of the destination's old bytes an apply journals (up to the base's size).
//! - `writer`: the journal's writer thread (writes and syncs overlap the journaling).
//! - [`preflight`]: base and journal-space checks made before anything is written.
//! - [`recover`]: finishing (roll forward) or undoing (roll back) an interrupted apply.
//! - [`resume`]: continuing an interrupted apply from its last durable checkpoint.
//! - [`snapback`]: kept undo journals as a rollback chain.
//! - [`state`]: journal/state file locations and the destination state file.
//! - [`apply`]: verify-then-journal-then-write, commit, state update.
//! - `pipeline`: decoding, journaling and writing overlapped on three threads.
//! - `prepass`: journaling a delta file's old bytes ahead, from while it is verified (before
//!   any write) on into its applying pass, which waits for each batch's journal sync.
//!
//! Invariant: a destination byte is overwritten only after (a) the record carrying the new
//! byte has been verified and (b) the old byte is durable in the journal. Hence after any
//! crash, `recover` yields exactly the base (no commit) or exactly the target (commit).

pub mod apply;
pub mod claim;
pub mod dest;
pub mod format;
mod pipeline;
pub mod preflight;
mod prepass;
pub mod recover;
pub mod resume;
pub mod snapback;
pub mod span;
pub mod state;
pub mod test_hooks;
pub mod undo;
mod writer;

pub use apply::{apply_file, apply_stream, apply_stream_held, ApplyOptions, ApplyReport};
pub use recover::{recover, Recovery};
pub use state::{DestPaths, DestState, DEFAULT_STATE_DIR};
