//! Checks made before an apply writes anything: the destination holds the delta's base, and
//! the journal directory has room for the undo journal.

use super::span::UndoSpan;
use super::state::{DestPaths, DestState};
use crate::error::{Error, Result};
use crate::stream::fingerprint::content_fingerprint;
use crate::stream::Header;
use std::path::Path;

/// A destination error naming `dest`.
pub fn dest_err(dest: &Path, detail: String) -> Error {
    Error::Destination {
        dest: dest.display().to_string(),
        detail,
    }
}

/// Check that the destination holds the delta's base (by state file, else by content).
pub fn check_base(h: &Header, dest: &Path, paths: &DestPaths) -> Result<()> {
    if h.is_full() {
        return Ok(());
    }
    let (have, how) = match DestState::load(&paths.state)?.and_then(|s| s.fingerprint()) {
        Some(fp) => (fp, "its state file"),
        None => (
            content_fingerprint(dest, h.base_size)?,
            "its contents (no state file)",
        ),
    };
    if have == h.base {
        return Ok(());
    }
    Err(Error::BaseMismatch {
        dest: dest.display().to_string(),
        detail: format!(
            "holds state {have} (from {how}) but the delta applies to {}; apply the missing \
             deltas first, run a full sync, or pass --force if you know better",
            h.base
        ),
    })
}

/// The worst-case size of the undo journal of the stream `h` journaling `span`: the old
/// contents of every touched range (at most `span.end` bytes: nothing past it is journaled),
/// frame overhead (64 B per MiB) and 1 MiB for head, commit and padding.
pub fn journal_need(h: &Header, span: UndoSpan) -> u64 {
    let old = h.touched_bytes.0.min(span.end);
    old + old / (1 << 20) * 64 + (1 << 20)
}

/// Refuse if the journal directory can't hold the old contents of every touched range in
/// `span` (counting the blocks of the destination's spare journal, which the apply reuses).
pub fn check_journal_space(h: &Header, span: UndoSpan, paths: &DestPaths) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let st = nix::sys::statvfs::statvfs(&paths.dir)
        .map_err(|e| Error::io(&paths.dir, std::io::Error::from(e)))?;
    let spare = std::fs::metadata(&paths.spare).map_or(0, |m| m.blocks() * 512);
    let free = (st.blocks_available() as u64)
        .saturating_mul(st.fragment_size() as u64)
        .saturating_add(spare);
    let need = journal_need(h, span);
    if free < need {
        return Err(dest_err(
            &paths.dir,
            format!(
                "journal directory has {free} bytes free but the undo journal may need {need}; \
                 free space or pass --state-dir on a larger filesystem"
            ),
        ));
    }
    Ok(())
}
