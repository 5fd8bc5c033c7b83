//! Journaling ahead while a delta *file* is verified.
//!
//! `lvmsync apply` of a file reads it twice: a first pass verifies the whole stream before
//! anything is written (so a bad file writes nothing), a second applies it. The first pass
//! is CPU-bound (decompression, blake3), and the undo journal needs only the *ranges* the
//! stream touches, not its bytes: so while one thread verifies, this one reads the old bytes
//! of each verified range and appends them to the journal. The destination is not written
//! during this pass; if verification fails the journal is simply deleted.
//!
//! The second pass must not write a range the first did not journal (the file could change
//! in between). The journaled ranges are kept, coalesced, in [`Covered`], and every range
//! of the second pass inside the journaled-ahead part is checked against them. The list is
//! bounded ([`MAX_RANGES`]): past it, journaling ahead stops at a record boundary and the
//! rest is journaled by the apply pipeline as usual.

use super::dest::Destination;
use super::undo::{Incoming, UndoJournal};
use crate::error::{Error, Result};
use crate::stream::{Header, Item, StreamReader};
use std::io::Read;
use std::sync::mpsc::sync_channel;

/// Most coalesced ranges journaled ahead (16 bytes each: 1 MiB).
const MAX_RANGES: usize = 1 << 16;

/// The ranges journaled ahead, in order, coalesced; checked in order by the second pass.
#[derive(Debug, Default)]
pub(super) struct Covered {
    ranges: Vec<(u64, u64)>,
    next: usize,
}

impl Covered {
    /// Was `[offset, offset+len)` journaled ahead? `Ok(false)`: it lies past the
    /// journaled-ahead part (journal it now). An error if it lies inside that part but was
    /// not journaled: the stream differs from the one verified.
    pub(super) fn check(&mut self, name: &str, offset: u64, len: u64) -> Result<bool> {
        let Some(&(_, ahead_end)) = self.ranges.last() else {
            return Ok(false);
        };
        if offset >= ahead_end {
            return Ok(false);
        }
        while self.ranges[self.next].1 <= offset {
            self.next += 1;
        }
        let (start, end) = self.ranges[self.next];
        if start <= offset && offset + len <= end {
            return Ok(true);
        }
        Err(Error::Integrity {
            stream: name.to_string(),
            detail: format!(
                "extent {offset}+{len} was not in the stream when it was verified; the file \
                 changed during the apply"
            ),
        })
    }

    /// Record a journaled range; false (and nothing recorded) once the list is full.
    fn push(&mut self, offset: u64, len: u64) -> bool {
        let full = self.ranges.len() >= MAX_RANGES;
        match self.ranges.last_mut() {
            Some(last) if last.1 == offset => last.1 += len,
            _ if full => return false,
            _ => self.ranges.push((offset, offset + len)),
        }
        true
    }
}

/// Verify the whole stream in `input` (whose header must equal `header`) on a second thread
/// while journaling the old bytes of the ranges it touches from `old` (when both a journal
/// and an existing destination are given). Writes nothing to the destination. On success
/// the journal is durable and the returned ranges are what it covers.
pub(super) fn verify_and_journal<R: Read + Send>(
    input: R,
    name: &str,
    header: &Header,
    old: Option<&Destination>,
    mut journal: Option<&mut UndoJournal>,
) -> Result<Covered> {
    let mut covered = Covered::default();
    let mut full = false;
    std::thread::scope(|s| {
        let (tx, ranges) = sync_channel::<(u64, u64)>(256);
        let verifier = s.spawn(move || -> Result<()> {
            let mut r = StreamReader::open(input, name)?;
            if r.header() != header {
                return Err(Error::Integrity {
                    stream: name.to_string(),
                    detail: "header changed between the verifying and the applying pass".into(),
                });
            }
            while let Some(item) = r.next_item()? {
                let range = match item {
                    Item::Data { offset, data } => (offset, data.len() as u64),
                    Item::Zero { offset, len } | Item::Discard { offset, len } => (offset, len),
                    Item::Checkpoint(_) | Item::Resume(_) => continue,
                };
                // Without a journal nobody listens; verification goes on regardless.
                let _ = tx.send(range);
            }
            Ok(())
        });
        let mut saved = Ok(());
        for (offset, len) in ranges.iter() {
            let (Some(j), Some(d), false, Ok(())) = (journal.as_deref_mut(), old, full, &saved)
            else {
                continue;
            };
            full = !covered.push(offset, len);
            if !full {
                saved = j.save_old(d, offset, len, Incoming::Unknown).map(drop);
            }
        }
        verifier.join().expect("the verifier does not panic")?;
        saved
    })?;
    if let Some(j) = journal {
        j.sync()?;
    }
    Ok(covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_pass_may_write_only_what_was_journaled_ahead() {
        let mut c = Covered::default();
        for (o, l) in [(0, 4096), (4096, 4096), (65536, 4096)] {
            assert!(c.push(o, l));
        }
        assert_eq!(c.ranges, vec![(0, 8192), (65536, 69632)]);
        assert!(c.check("d", 0, 4096).unwrap());
        assert!(c.check("d", 4096, 4096).unwrap());
        // A range in the gap (the file changed between the passes) is refused...
        let err = c.check("d", 16384, 4096).unwrap_err().to_string();
        assert!(err.contains("changed during the apply"), "{err}");
        // ...as is one straddling a journaled range's end; past the part, journal as usual.
        assert!(c.check("d", 65536, 8192).is_err());
        assert!(!c.check("d", 69632, 4096).unwrap());
    }

    #[test]
    fn journaling_ahead_stops_at_the_range_limit() {
        let mut c = Covered::default();
        for i in 0..MAX_RANGES as u64 {
            assert!(c.push(i * 8192, 4096));
        }
        assert!(
            c.push(MAX_RANGES as u64 * 8192 - 4096, 4096),
            "adjacent: coalesced"
        );
        assert!(!c.push(MAX_RANGES as u64 * 8192 + 4096, 4096));
        assert_eq!(c.ranges.len(), MAX_RANGES);
    }
}
