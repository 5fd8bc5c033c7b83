//! Resuming an interrupted apply from its last durable checkpoint.
//!
//! With `--resumable`, the receiver makes the destination durable at every stream checkpoint
//! and records the checkpoint in the undo journal (a `P` frame). If the stream is then cut,
//! the journal is kept instead of rolled back, and the error names a *resume token*: the
//! checkpoint, hex-encoded. The sender sends only what follows it (`send --resume TOKEN`: a
//! continuation stream that starts with a resume marker carrying the checkpoint), and
//! `receive --resume` first undoes whatever was written after the checkpoint, then continues
//! appending to the same journal — so a later crash or failure still rolls the destination
//! back to exactly the base, and success commits exactly the target.

use super::dest::Destination;
use super::format::{JournalReader, Progress};
use super::span::UndoSpan;
use super::state::DestPaths;
use super::test_hooks;
use super::undo::UndoJournal;
use crate::error::{Error, Result};
use crate::stream::record::Checkpoint;
use crate::stream::Header;
use std::fs::File;
use std::io::BufReader;

/// The token naming checkpoint `cp` (128 hex digits).
pub fn token(cp: &Checkpoint) -> String {
    cp.encode().iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse a token made by [`token`].
pub fn parse_token(s: &str) -> Result<Checkpoint> {
    let bad = || Error::InvalidArgument(format!("resume token {s:?} is not 128 hex digits"));
    if s.len() != 128 || !s.is_ascii() {
        return Err(bad());
    }
    let bytes = (0..64)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>>>()?;
    Checkpoint::decode(&bytes).map_err(|_| bad())
}

fn open(paths: &DestPaths) -> Result<JournalReader<BufReader<File>>> {
    let f = File::open(&paths.journal).map_err(|_| Error::Destination {
        dest: paths.canonical.clone(),
        detail: "has no interrupted apply to resume; send the whole stream instead".into(),
    })?;
    JournalReader::open(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| Error::io(&paths.journal, e))?
        .ok_or_else(|| Error::Integrity {
            stream: paths.journal.display().to_string(),
            detail: "journal head is damaged; run `lvmsync recover` and send again".into(),
        })
}

/// The checkpoint a kept partial apply to this destination can resume from, if any (what a
/// listening receiver offers a reconnecting sender). Reads the journal; writes nothing.
pub fn resume_point(paths: &DestPaths) -> Result<Option<Checkpoint>> {
    if !paths.journal.exists() {
        return Ok(None);
    }
    let mut scan = open(paths)?;
    while scan
        .next_entry()
        .map_err(|e| Error::io(&paths.journal, e))?
        .is_some()
    {}
    Ok(scan
        .progress
        .filter(|_| !scan.committed)
        .map(|p| p.checkpoint))
}

/// Prepare to resume the kept apply for the stream described by `h`: check it is the same
/// delta, undo everything written after the last durable checkpoint, and reopen the journal
/// there, writing through `dest` (the destination, claimed by the apply). Returns the journal
/// and the checkpoint the stream must continue from.
pub fn prepare(
    paths: &DestPaths,
    h: &Header,
    dest: &Destination,
) -> Result<(UndoJournal, Checkpoint)> {
    let mut scan = open(paths)?;
    let jerr = |e| Error::io(&paths.journal, e);
    while scan.next_entry().map_err(jerr)?.is_some() {}
    let head = scan.head.clone();
    if head.dest != paths.canonical || head.base != h.base || head.target != h.target {
        return Err(Error::BaseMismatch {
            dest: paths.canonical.clone(),
            detail: format!(
                "the interrupted apply was {} -> {}, this stream is {} -> {}; run \
                 `lvmsync recover` to undo it, then send again",
                head.base, head.target, h.base, h.target
            ),
        });
    }
    let Some(Progress {
        checkpoint,
        entries,
        journal_len,
    }) = scan.progress.filter(|_| !scan.committed)
    else {
        return Err(Error::Destination {
            dest: paths.canonical.clone(),
            detail: "the interrupted apply reached no durable checkpoint; run \
                     `lvmsync recover` and send again"
                .into(),
        });
    };
    let mut undo = open(paths)?;
    let mut seen = 0;
    while let Some(entry) = undo.next_entry().map_err(jerr)? {
        seen += 1;
        if seen <= entries {
            continue;
        }
        match entry {
            super::format::UndoEntry::Data { offset, data } => dest.write_at(&data, offset)?,
            super::format::UndoEntry::Zero { offset, len } => dest.zero_range(offset, len)?,
        }
        test_hooks::delay();
    }
    dest.sync()?;
    let journal = UndoJournal::reopen(
        &paths.journal,
        journal_len,
        entries,
        checkpoint,
        UndoSpan::whole(head.size_before),
        scan.seed(),
    )?;
    Ok((journal, checkpoint))
}
