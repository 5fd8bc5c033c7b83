//! Recovery: finish or undo an interrupted apply.
//!
//! - No journal: nothing to do (a *spare*, a finished journal kept for reuse, is not read).
//! - Journal whose head is missing or torn: no destination byte was written under it
//!   (the head is made durable first), so it is set aside as the spare.
//! - Journal with a valid commit: the destination holds the target and was synced before
//!   the commit was written; only the state file may lag, so it is written (roll forward).
//! - Otherwise: every journaled range is restored, the destination synced, a grown file cut
//!   back, and only then the journal set aside (roll back). Restoring is idempotent, so a
//!   crash during recovery is recovered by running it again.
//!
//! "Set aside" renames the journal to the destination's spare (see [`super::undo`]): only
//! the name `<key>.journal` means "an apply may be unfinished".

use super::dest::Destination;
use super::format::{JournalReader, UndoEntry};
use super::state::{now_unix, DestPaths, DestState};
use super::test_hooks;
use super::undo::retire;
use crate::error::{Error, Result};
use std::fs::File;
use std::io::BufReader;

/// What recovery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// There was no interrupted apply.
    Nothing,
    /// An interrupted apply was undone: the destination holds its previous state again.
    RolledBack {
        /// Undo entries restored.
        entries: u64,
    },
    /// A committed apply's bookkeeping was finished: the destination holds the target.
    RolledForward,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recovery::Nothing => f.write_str("no interrupted apply"),
            Recovery::RolledBack { entries } => write!(
                f,
                "interrupted apply rolled back ({entries} ranges restored); the destination \
                 holds its previous state"
            ),
            Recovery::RolledForward => {
                f.write_str("committed apply completed; the destination holds the delta's target")
            }
        }
    }
}

fn open_journal(paths: &DestPaths) -> Result<Option<JournalReader<BufReader<File>>>> {
    let f = match File::open(&paths.journal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&paths.journal, e)),
    };
    JournalReader::open(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| Error::io(&paths.journal, e))
}

/// Finish or undo an interrupted apply to the destination whose files are `paths`. `held`
/// is the destination if the caller already opened (claimed) it, as writers do before
/// anything else; otherwise it is opened here when there is something to undo.
pub fn recover(paths: &DestPaths, held: Option<&Destination>) -> Result<Recovery> {
    let jerr = |e| Error::io(&paths.journal, e);
    let Some(mut scan) = open_journal(paths)? else {
        if paths.journal.exists() {
            retire(paths)?;
        }
        return Ok(Recovery::Nothing);
    };
    if scan.head.dest != paths.canonical {
        return Err(Error::Integrity {
            stream: paths.journal.display().to_string(),
            detail: format!(
                "journal belongs to {}, not {}; move it back beside its destination",
                scan.head.dest, paths.canonical
            ),
        });
    }
    while scan.next_entry().map_err(jerr)?.is_some() {}
    let head = scan.head.clone();
    if scan.committed {
        DestState {
            dest: head.dest.clone(),
            fingerprint: head.target.to_hex(),
            device_size: head.device_size,
            source: head.source.clone(),
            applied_unix: now_unix(),
        }
        .save(&paths.state)?;
        retire(paths)?;
        return Ok(Recovery::RolledForward);
    }
    let opened;
    let dest = match held {
        Some(d) => d,
        None => {
            opened = Destination::open(std::path::Path::new(&head.dest), false)?;
            &opened
        }
    };
    let mut journal = open_journal(paths)?.expect("head was valid a moment ago");
    let mut entries = 0u64;
    while let Some(entry) = journal.next_entry().map_err(jerr)? {
        match entry {
            UndoEntry::Data { offset, data } => dest.write_at(&data, offset)?,
            UndoEntry::Zero { offset, len } => dest.zero_range(offset, len)?,
        }
        entries += 1;
        test_hooks::delay();
    }
    dest.sync()?;
    if !dest.is_block() && dest.size()? > head.size_before {
        dest.set_len(head.size_before)?;
        dest.sync()?;
    }
    retire(paths)?;
    Ok(Recovery::RolledBack { entries })
}
