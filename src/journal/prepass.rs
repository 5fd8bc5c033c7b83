//! Journaling ahead while a delta *file* is verified, and on while it is applied.
//!
//! `lvmsync apply` of a file reads it twice: a first pass verifies the whole stream before
//! anything is written (so a bad file writes nothing), a second applies it. Both passes are
//! CPU-bound (decompression, blake3), and the undo journal needs only the *ranges* the
//! stream touches, not its bytes: so while this thread verifies, a journaling thread
//! ([`journal_ahead`]) reads the old bytes of each verified range and appends them to the
//! journal. It does not stop when verification ends: the second pass starts at once, and
//! the journaling thread goes on, queueing a journal sync every [`SYNC_EVERY`] bytes and
//! publishing how far each sync's ticket covers ([`Ahead::ticket_for`]). The second pass's
//! writer waits, before each batch, for the sync covering the batch's last byte, so no
//! destination byte is written before its old bytes are durable, while writing the journal
//! overlaps both passes' decoding. If verification fails the journaling thread is stopped
//! and the journal deleted: the destination was not written.
//!
//! The second pass must not write a range the first did not journal (the file could change
//! in between). The verified ranges are kept, coalesced, in [`Covered`], and every range of
//! the second pass inside the journaled-ahead part is checked against them. The list is
//! bounded ([`MAX_RANGES`]): past it, journaling ahead stops at a record boundary; then the
//! second pass waits for the journaling thread to finish and journals the rest itself, as
//! the apply pipeline does for a pipe.

use super::dest::Destination;
use super::test_hooks;
use super::undo::{Incoming, UndoJournal};
use crate::error::{Error, Result};
use crate::stream::{Header, Item, StreamReader};
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Most coalesced ranges journaled ahead (16 bytes each: 1 MiB).
const MAX_RANGES: usize = 1 << 16;
/// The journaling thread saves old bytes in pieces of at most this many bytes...
const PIECE: u64 = 8 << 20;
/// ...and queues a journal sync (a ticket the applying pass can wait for) after this many.
const SYNC_EVERY: u64 = 32 << 20;

/// The ranges journaled ahead, in order, coalesced; checked in order by the second pass.
#[derive(Debug, Default, Clone)]
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
        Err(changed(name, offset, len))
    }

    /// The end of the journaled-ahead part (0 if none).
    pub(super) fn end(&self) -> u64 {
        self.ranges.last().map_or(0, |&(_, end)| end)
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

/// The error for an extent of the applying pass that the verifying pass did not see.
pub(super) fn changed(name: &str, offset: u64, len: u64) -> Error {
    Error::Integrity {
        stream: name.to_string(),
        detail: format!(
            "extent {offset}+{len} was not in the stream when it was verified; the file \
             changed during the apply"
        ),
    }
}

/// Where verification and the journaling thread stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Verifying,
    /// The whole stream verified: [`AheadState::covered`] is final.
    Verified,
    /// Verification or the apply failed, or the journaling thread did: stop.
    Stopped,
}

struct AheadState {
    /// Verified ranges (the journaling thread journals them in order).
    covered: Covered,
    /// [`MAX_RANGES`] reached: later ranges are not in `covered`.
    full: bool,
    phase: Phase,
    /// Queued journal syncs, oldest first: (end, ticket): once `ticket` is durable, every
    /// covered byte before `end` is durable in the journal.
    marks: VecDeque<(u64, u64)>,
    /// A wait for the journaling thread failed because it had stopped on its own: the
    /// apply's failure is then only that consequence, not a failure of its own.
    waited_in_vain: bool,
}

/// Shared by the verifying pass, the journaling thread and the applying pass's writer.
pub(super) struct Ahead {
    st: Mutex<AheadState>,
    cv: Condvar,
}

impl Default for Ahead {
    fn default() -> Self {
        Ahead {
            st: Mutex::new(AheadState {
                covered: Covered::default(),
                full: false,
                phase: Phase::Verifying,
                marks: VecDeque::new(),
                waited_in_vain: false,
            }),
            cv: Condvar::new(),
        }
    }
}

impl Ahead {
    fn state(&self) -> MutexGuard<'_, AheadState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop the journaling thread (after a failure anywhere); waiters get an error.
    pub(super) fn stop(&self) {
        self.state().phase = Phase::Stopped;
        self.cv.notify_all();
    }

    /// After a verification that passed: whether the journaling thread stopped on its own
    /// meanwhile, which the caller then fails for (remembered, see [`Self::waited_in_vain`]).
    pub(super) fn stopped_under_us(&self) -> bool {
        let mut st = self.state();
        st.waited_in_vain |= st.phase == Phase::Stopped;
        st.waited_in_vain
    }

    /// Whether the apply failed only because the journaling thread had stopped (a wait for
    /// it failed): then its failure is the thread's, not one of the apply's own.
    pub(super) fn waited_in_vain(&self) -> bool {
        self.state().waited_in_vain
    }

    /// The ticket of the first journal sync that covers every journaled-ahead byte before
    /// `end`, waiting until the journaling thread has queued it. An error if it stopped
    /// first (its own error, if any, is what the apply reports).
    pub(super) fn ticket_for(&self, end: u64) -> Result<u64> {
        let mut st = self.state();
        loop {
            while st.marks.front().is_some_and(|&(e, _)| e < end) {
                st.marks.pop_front();
            }
            if let Some(&(_, ticket)) = st.marks.front() {
                return Ok(ticket);
            }
            if st.phase == Phase::Stopped {
                st.waited_in_vain = true;
                return Err(Error::Destination {
                    dest: "destination".into(),
                    detail: "journaling ahead stopped before the destination was written".into(),
                });
            }
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// After verification: the verified ranges, and whether they are all of the stream's
    /// (false: past [`MAX_RANGES`] the applying pass journals the rest itself).
    pub(super) fn covered(&self) -> (Covered, bool) {
        let st = self.state();
        (st.covered.clone(), !st.full)
    }
}

/// Verify the whole stream in `input` (whose header must equal `header`), recording the
/// ranges it touches in `ahead` for the journaling thread. Writes nothing.
pub(super) fn verify<R: Read>(input: R, name: &str, header: &Header, ahead: &Ahead) -> Result<()> {
    let verified = (|| {
        let mut r = StreamReader::open(input, name)?;
        if r.header() != header {
            return Err(Error::Integrity {
                stream: name.to_string(),
                detail: "header changed between the verifying and the applying pass".into(),
            });
        }
        while let Some(item) = r.next_item()? {
            let (offset, len) = match item {
                Item::Data { offset, data } => (offset, data.len() as u64),
                Item::Zero { offset, len } | Item::Discard { offset, len } => (offset, len),
                Item::Checkpoint(_) | Item::Resume(_) => continue,
            };
            let mut st = ahead.state();
            if !st.full {
                st.full = !st.covered.push(offset, len);
                drop(st);
                ahead.cv.notify_all();
            }
        }
        Ok(())
    })();
    let mut st = ahead.state();
    st.phase = match (&verified, st.phase) {
        (Ok(()), Phase::Verifying) => Phase::Verified,
        _ => Phase::Stopped,
    };
    drop(st);
    ahead.cv.notify_all();
    verified
}

/// The journaling thread: append the old bytes (read from `old`) of every range `ahead`
/// records, in order, as verification records them and after; queue a sync every
/// [`SYNC_EVERY`] bytes and one at the end, and publish each. Returns once every range of
/// a verified stream is journaled (its last sync queued, not necessarily done), or early
/// when stopped.
pub(super) fn journal_ahead(ahead: &Ahead, old: &Destination, j: &mut UndoJournal) -> Result<()> {
    let mut guard = StopUnlessDone(Some(ahead));
    let r = journal_all(ahead, old, j);
    if test_hooks::journaling_panics() {
        panic!("LVMSYNC_TEST_JOURNALING_PANICS: the journaling thread panics (test-only)");
    }
    if r.is_ok() {
        guard.0 = None;
    }
    r
}

/// Held by the journaling thread: on an error *and* on a panic it stops `ahead`, so the
/// applying pass's writer, waiting in [`Ahead::ticket_for`], fails instead of waiting
/// forever for a mark that will never come.
struct StopUnlessDone<'a>(Option<&'a Ahead>);

impl Drop for StopUnlessDone<'_> {
    fn drop(&mut self) {
        if let Some(ahead) = self.0 {
            ahead.stop();
        }
    }
}

fn journal_all(ahead: &Ahead, old: &Destination, j: &mut UndoJournal) -> Result<()> {
    // Under the crash-test hook, a slow journal that syncs every piece: the applying pass
    // then keeps catching up with it, so kills land between its syncs and the writes.
    let (piece, sync_every) = match test_hooks::slow_ms() {
        0 => (PIECE, SYNC_EVERY),
        _ => (64 << 10, 1),
    };
    let (mut idx, mut pos, mut unsynced) = (0usize, 0u64, 0u64);
    let durable = j.durable();
    loop {
        // A failed journal write or sync fails every later one; stop at once instead of
        // reading the rest of the destination's old bytes for nothing (ticket 0 is always
        // durable: this only returns that failure).
        durable.wait(0)?;
        let next = {
            let mut st = ahead.state();
            loop {
                if st.phase == Phase::Stopped {
                    return Ok(());
                }
                if let Some(&(start, end)) = st.covered.ranges.get(idx) {
                    // A destination written in whole blocks has them journaled whole, each
                    // once (see `pipeline::journal_whole_blocks`): `pos` only moves forward.
                    let (start, end) = old.whole_blocks(start, end - start).unwrap_or((start, end));
                    let from = pos.max(start);
                    if from < end {
                        break Some((from, (end - from).min(piece)));
                    }
                    if idx + 1 < st.covered.ranges.len() {
                        idx += 1;
                        continue;
                    }
                }
                if st.phase == Phase::Verified {
                    break None;
                }
                st = ahead.cv.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some((offset, len)) = next else {
            publish(ahead, u64::MAX, j.sync_begin()?);
            return Ok(());
        };
        j.save_old(old, offset, len, Incoming::Unknown)?;
        pos = offset + len;
        unsynced += len;
        if unsynced >= sync_every {
            publish(ahead, pos, j.sync_begin()?);
            unsynced = 0;
            test_hooks::delay();
        }
    }
}

fn publish(ahead: &Ahead, end: u64, ticket: u64) {
    ahead.state().marks.push_back((end, ticket));
    ahead.cv.notify_all();
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

    #[test]
    fn a_journaling_thread_that_panics_releases_the_waiting_writer() {
        let ahead = Ahead::default();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| ahead.ticket_for(4096));
            let journaling = s.spawn(|| {
                let _guard = StopUnlessDone(Some(&ahead));
                panic!("a journaling thread that panics (expected by this test)");
            });
            assert!(journaling.join().is_err());
            assert!(waiter.join().unwrap().is_err(), "the writer must not hang");
        });
        // The writer's failure is only the panic's consequence: the apply reports the panic.
        assert!(ahead.waited_in_vain());
        assert!(ahead.stopped_under_us());
        // A stop by the apply itself (its own failure) is not that.
        let own = Ahead::default();
        own.stop();
        assert!(!own.waited_in_vain());
    }

    #[test]
    fn a_batch_waits_for_the_first_sync_covering_its_end() {
        let ahead = Ahead::default();
        publish(&ahead, 32 << 20, 1);
        publish(&ahead, 64 << 20, 2);
        assert_eq!(ahead.ticket_for(4096).unwrap(), 1);
        assert_eq!(ahead.ticket_for(32 << 20).unwrap(), 1);
        assert_eq!(ahead.ticket_for((32 << 20) + 1).unwrap(), 2);
        // Not yet covered: waits; a stopped journaling thread fails the wait.
        std::thread::scope(|s| {
            let w = s.spawn(|| ahead.ticket_for(65 << 20));
            std::thread::sleep(std::time::Duration::from_millis(20));
            ahead.stop();
            assert!(w.join().unwrap().is_err());
        });
    }
}
