//! The apply pipeline: decoding, journaling and writing overlap on three threads.
//!
//! ```text
//! decoder ──items──▶ journaler (caller's thread) ──batches──▶ writer ──▶ destination
//! ```
//!
//! - The decoder reads, decompresses and verifies records, at most [`DECODED_AHEAD`] ahead.
//! - The journaler groups records into batches and appends the old bytes of each record's
//!   range to the undo journal as it arrives (the journal's own writer thread writes them
//!   out); at the end of a batch it queues one journal fdatasync and hands the batch over
//!   with that sync's ticket, without waiting for it.
//! - The writer waits until the batch's ticket is durable, then writes the batch in place,
//!   while the journaler reads and journals batch N+1: batch N's journal fdatasync overlaps
//!   journaling batch N+1. The stream's extents are in order and never overlap, so batch
//!   N's writes never touch the old bytes batch N+1 is saving.
//!
//! The hand-over is a rendezvous: at most two batches exist at once (one with the writer,
//! one being journaled), so memory stays bounded whatever the device size. Invariant kept:
//! the writer writes a batch only after its old bytes are durable in the journal.
//!
//! A delta *file*'s apply journals ahead instead (see `super::prepass`): the journal then
//! belongs to the journaling thread, which may still be at work; the journaler only checks
//! that each record was verified, and the writer waits for the journal sync that the
//! journaling thread queued past the batch's last byte.

use super::dest::Destination;
use super::prepass::{changed, Ahead, Covered};
use super::test_hooks;
use super::undo::{Incoming, UndoJournal};
use super::writer::Durable;
use super::ApplyReport;
use crate::error::{Error, Result};
use crate::stream::{Item, StreamReader};
use std::io::Read;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Hand a batch to the writer once it holds this many plain bytes or records.
const BATCH_BYTES: u64 = 16 << 20;
const BATCH_RECORDS: usize = 512;
/// Verified records the decoding thread may hold ready ahead of the journaler.
const DECODED_AHEAD: usize = 4;

/// What the journaler asks of the writer.
enum Work<'a> {
    /// Write these records once their old bytes are durable in the journal.
    Batch(Vec<Item>, Gate<'a>),
    /// Make everything written so far durable, then answer [`Done::Synced`].
    Sync,
}

/// What a batch waits for before it is written.
enum Gate<'a> {
    /// The journal sync with this ticket (0: nothing to wait for).
    Ticket(u64),
    /// The sync the journaling thread queues past this offset, journaling ahead.
    Ahead(&'a Ahead, u64),
}

/// What the writer reports back.
enum Done {
    /// Bytes written in place.
    Bytes(u64),
    /// The destination is durable up to everything handed over before the request.
    Synced,
}

/// How the records are journaled.
pub(super) struct JournalPlan<'a> {
    /// The undo journal; `None` for `--unsafe-no-journal`, or while the journaling thread
    /// holds it (`behind`).
    pub journal: Option<&'a mut UndoJournal>,
    /// The journaling thread journals every record ahead (all in `ahead`) and publishes its
    /// syncs here; the journal's syncs are waited for with the `Durable`.
    pub behind: Option<(&'a Ahead, Durable)>,
    /// Ranges already journaled while a delta file was verified.
    pub ahead: Covered,
    /// Make the destination durable at each checkpoint and record it in the journal.
    pub resumable: bool,
}

/// Apply every record from `reader` (after `first`, if any) to `d`, journaling first.
pub(super) fn run_records<R: Read + Send>(
    reader: &mut StreamReader<R>,
    first: Option<Item>,
    d: &Destination,
    name: &str,
    plan: JournalPlan<'_>,
    report: &mut ApplyReport,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let JournalPlan {
        journal,
        behind,
        ahead,
        resumable,
    } = plan;
    let total = reader.header().touched_bytes.0;
    std::thread::scope(|s| {
        let (items_tx, items) = sync_channel::<Result<Option<Item>>>(DECODED_AHEAD);
        s.spawn(move || loop {
            let next = reader.next_item();
            let more = matches!(next, Ok(Some(_)));
            if items_tx.send(next).is_err() || !more {
                return;
            }
        });
        let (work_tx, work) = sync_channel::<Work>(0);
        let (done_tx, done) = channel::<Done>();
        let (behind, durable) = match behind {
            Some((a, d)) => (Some(a), Some(d)),
            None => (None, journal.as_deref().map(UndoJournal::durable)),
        };
        let writer = s.spawn(move || write_batches(d, durable.as_ref(), &work, &done_tx));
        // Whole blocks are journaled once each: those the journaling thread covered are done.
        // A resumed apply has journaled the records before its checkpoint (exactly: a
        // destination written in whole blocks is never resumed, `apply.rs`).
        let resumed_from = journal.as_deref().and_then(UndoJournal::progress);
        let journaled_to =
            block_end(d, ahead.end()).max(resumed_from.map_or(0, |cp| cp.resume_offset));
        let mut j = Journaler {
            dest: d,
            name,
            ahead,
            journal,
            behind,
            work: work_tx,
            done,
            written: 0,
            total,
            progress,
            journaled_to,
        };
        let fed = j.feed(first, &items, resumable, report);
        let Journaler {
            work,
            done,
            mut written,
            progress,
            ..
        } = j;
        drop(work);
        drop(items);
        // A writer error explains a failed hand-over, so it comes first.
        writer.join().expect("the writer thread does not panic")?;
        fed?;
        for msg in done.try_iter() {
            if let Done::Bytes(n) = msg {
                written += n;
            }
        }
        progress(written, total);
        Ok(())
    })
}

/// The journaling stage, run on the caller's thread.
struct Journaler<'a, 'p> {
    dest: &'a Destination,
    /// The stream's name, for errors.
    name: &'a str,
    /// Ranges journaled while the file was verified (none for a pipe).
    ahead: Covered,
    journal: Option<&'a mut UndoJournal>,
    /// Journaling ahead, on another thread (then `journal` is `None`).
    behind: Option<&'a Ahead>,
    work: SyncSender<Work<'a>>,
    done: Receiver<Done>,
    written: u64,
    total: u64,
    progress: &'p mut dyn FnMut(u64, u64),
    /// Where a destination written in whole blocks ([`Destination::whole_blocks`]) has its
    /// old bytes journaled up to (a block boundary).
    journaled_to: u64,
}

/// Journal the old bytes of the whole blocks `[start, end)` that a record's write covers on
/// a destination written in whole blocks ([`Destination::write_data`]: a thin LV whose pool
/// skips zeroing), except the part before `journaled_to`, which is then moved to `end`.
///
/// Why this keeps the journal's guarantee (after any crash, recovery yields exactly the old
/// or the new state):
/// - Each block is journaled once, by the first record that touches it, before any write to
///   it (the records come in order and never overlap, so the widened ranges only move
///   forward; a later record in the same block journals only what lies past `journaled_to`).
///   Its entry thus holds the block's bytes before the apply. Journaling the block again
///   later would record the earlier record's *new* bytes, and recovery, restoring entries in
///   order, would end with those: hence exactly once. A pipeline that takes over from
///   journaling ahead starts past the blocks that thread journaled. Such an apply is never
///   kept for `--resume` nor resumed (`apply.rs`): the block holding a checkpoint would be
///   journaled twice by a resumed apply, or not at all if the kept journal's entries were
///   exact (an older lvmsync's, or the pool's zeroing switched in between).
/// - Logically the widened parts are rewritten with the bytes they had, so without a crash
///   the new state is exactly the stream's. But a write is made durable by writeback in
///   pages, not atomically: a crash may leave a newly provisioned block with only some of
///   its pages written, the rest reading the data device's old junk. Those bytes lie outside
///   the record, so journaling the record alone would not restore them; the whole block's
///   entry does (restoring entries writes exactly their ranges: whole blocks).
/// - Never skipped as "already equal": the check would look at the record's bytes only,
///   while the write is what makes the rest of an unprovisioned block read zeroes.
///
/// The undo journal's format and recovery do not change; the journal only holds more (an
/// unprovisioned block's old bytes are zeroes, journaled as one small zero entry).
fn journal_whole_blocks(
    j: &mut UndoJournal,
    dest: &Destination,
    journaled_to: &mut u64,
    start: u64,
    end: u64,
) -> Result<()> {
    let from = start.max(*journaled_to);
    if from < end {
        j.save_old(dest, from, end - from, Incoming::Unknown)?;
    }
    *journaled_to = end.max(*journaled_to);
    Ok(())
}

/// The end of the whole block that holds byte `pos - 1` of `d`, if it is written in whole
/// blocks; `pos` otherwise.
fn block_end(d: &Destination, pos: u64) -> u64 {
    match pos {
        0 => 0,
        _ => d
            .whole_blocks(pos - 1, 1)
            .map_or(pos, |(_, end)| end.max(pos)),
    }
}

impl<'a> Journaler<'a, '_> {
    fn feed(
        &mut self,
        mut first: Option<Item>,
        items: &Receiver<Result<Option<Item>>>,
        resumable: bool,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let mut batch: Vec<Item> = Vec::new();
        let mut batch_bytes = 0u64;
        loop {
            let item = match first.take() {
                Some(item) => item,
                None => match items.recv().expect("the decoder sends its end")? {
                    Some(item) => item,
                    None => break,
                },
            };
            let (offset, len) = match &item {
                Item::Data { offset, data } => (*offset, data.len() as u64),
                Item::Zero { offset, len } | Item::Discard { offset, len } => (*offset, *len),
                Item::Checkpoint(cp) => {
                    if self.journal.is_some() && resumable {
                        self.hand_over(std::mem::take(&mut batch))?;
                        batch_bytes = 0;
                        self.wait_synced()?;
                        if let Some(j) = self.journal.as_deref_mut() {
                            j.record_progress(*cp)?;
                        }
                    }
                    continue;
                }
                Item::Resume(_) => {
                    return Err(Error::Integrity {
                        stream: self.name.into(),
                        detail: "is a continuation (starts with a resume marker); apply it \
                                 with `lvmsync receive --resume`"
                            .into(),
                    })
                }
            };
            super::apply::count(report, &item);
            if let Some(j) = self.journal.as_deref_mut() {
                if !self.ahead.check(self.name, offset, len)? {
                    match self.dest.whole_blocks(offset, len) {
                        // Never skipped: see `journal_whole_blocks`.
                        Some((start, end)) => {
                            let to = &mut self.journaled_to;
                            journal_whole_blocks(j, self.dest, to, start, end)?;
                        }
                        None => {
                            let incoming = match &item {
                                Item::Data { data, .. } => Incoming::Data(data),
                                _ => Incoming::Zeroes,
                            };
                            if !j.save_old(self.dest, offset, len, incoming)? {
                                // The destination already holds these bytes: no entry, no
                                // write.
                                self.written += len;
                                continue;
                            }
                        }
                    }
                }
            } else if self.behind.is_some() && !self.ahead.check(self.name, offset, len)? {
                // Journaling ahead covers every verified record: this one was not.
                return Err(changed(self.name, offset, len));
            }
            batch_bytes += len.min(BATCH_BYTES);
            batch.push(item);
            // Under the crash-test hook every extent is its own batch, so kills land between them.
            if batch_bytes >= BATCH_BYTES
                || batch.len() >= BATCH_RECORDS
                || test_hooks::slow_ms() > 0
            {
                self.hand_over(std::mem::take(&mut batch))?;
                batch_bytes = 0;
            }
        }
        self.hand_over(batch)
    }

    /// Queue making the batch's journal entries durable, then give it to the writer, which
    /// waits for that before writing.
    fn hand_over(&mut self, batch: Vec<Item>) -> Result<()> {
        // Where its last write ends: past the record's end if widened to whole blocks.
        let Some(end) = batch.last().map(|it| match it {
            Item::Data { offset, data } => block_end(self.dest, offset + data.len() as u64),
            Item::Zero { offset, len } | Item::Discard { offset, len } => {
                block_end(self.dest, offset + len)
            }
            Item::Checkpoint(_) | Item::Resume(_) => 0,
        }) else {
            return Ok(());
        };
        let gate = match (self.journal.as_deref_mut(), self.behind) {
            (Some(j), _) => Gate::Ticket(j.sync_begin()?),
            (None, Some(ahead)) => Gate::Ahead(ahead, end),
            (None, None) => Gate::Ticket(0),
        };
        self.send(Work::Batch(batch, gate))?;
        self.note(self.done.try_iter().collect());
        Ok(())
    }

    /// Wait until the writer has made every batch handed over so far durable.
    fn wait_synced(&mut self) -> Result<()> {
        self.send(Work::Sync)?;
        let mut msgs = Vec::new();
        let mut synced = false;
        for msg in self.done.iter() {
            synced = matches!(msg, Done::Synced);
            msgs.push(msg);
            if synced {
                break;
            }
        }
        self.note(msgs);
        if synced {
            Ok(())
        } else {
            // The writer hung up before confirming: its error is what `run_records` reports.
            Err(self.writer_stopped())
        }
    }

    fn send(&self, w: Work<'a>) -> Result<()> {
        self.work.send(w).map_err(|_| self.writer_stopped())
    }

    /// The writer only hangs up after an error, which `run_records` reports instead.
    fn writer_stopped(&self) -> Error {
        Error::Destination {
            dest: "destination".into(),
            detail: "the writer stopped".into(),
        }
    }

    fn note(&mut self, msgs: Vec<Done>) {
        let before = self.written;
        for m in msgs {
            if let Done::Bytes(n) = m {
                self.written += n;
            }
        }
        if self.written != before {
            (self.progress)(self.written, self.total);
        }
    }
}

/// The writer stage: write each batch in place once its journal sync is done (`durable`;
/// journaling ahead, the sync is first looked up in the [`Ahead`]);
/// start its writeback at once (a sync on a third thread, requests coalesced) so it overlaps
/// the next batch instead of piling up for the final sync.
fn write_batches(
    d: &Destination,
    durable: Option<&Durable>,
    work: &Receiver<Work<'_>>,
    done: &std::sync::mpsc::Sender<Done>,
) -> Result<()> {
    // A failed background sync must fail the apply: the kernel reports a writeback error to
    // the first sync that sees it, so a later sync of the same file may well succeed.
    let flush_error: Mutex<Option<Error>> = Mutex::new(None);
    let take_flush_error = || flush_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    std::thread::scope(|s| {
        let (flush_tx, flush_rx) = sync_channel::<()>(1);
        let flush_error = &flush_error;
        s.spawn(move || {
            while flush_rx.recv().is_ok() {
                if let Err(e) = d.sync() {
                    let mut first = flush_error.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert(e);
                }
            }
        });
        for w in work.iter() {
            let msg = match w {
                Work::Batch(batch, gate) => {
                    if let Some(j) = durable {
                        let ticket = match gate {
                            Gate::Ticket(t) => t,
                            Gate::Ahead(ahead, end) => ahead.ticket_for(end)?,
                        };
                        j.wait(ticket)?;
                    }
                    let n = write_batch(d, batch)?;
                    let _ = flush_tx.try_send(());
                    Done::Bytes(n)
                }
                Work::Sync => {
                    d.sync()?;
                    if let Some(e) = take_flush_error() {
                        return Err(e);
                    }
                    Done::Synced
                }
            };
            let _ = done.send(msg);
        }
        Ok(())
    })?;
    take_flush_error().map_or(Ok(()), Err)
}

/// Write one batch; returns bytes written.
fn write_batch(d: &Destination, batch: Vec<Item>) -> Result<u64> {
    let mut done = 0;
    for it in batch {
        match it {
            Item::Data { offset, data } => {
                d.write_data(&data, offset)?;
                done += data.len() as u64;
            }
            Item::Zero { offset, len } | Item::Discard { offset, len } => {
                d.zero_range(offset, len)?;
                done += len;
            }
            Item::Checkpoint(_) | Item::Resume(_) => {}
        }
    }
    test_hooks::delay();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::super::{apply_stream_held, ApplyOptions};
    use super::*;
    use crate::stream::record::{Compression, DataRecord};
    use crate::stream::{Fingerprint, Header, StreamWriter};
    use crate::units::Bytes;

    const BLOCK: u64 = 128 << 10;
    const SIZE: u64 = 4 * BLOCK;

    /// A full stream of small records, every third a zero record, all in the first pool
    /// block (more than two batches of them) and one in the last; the destination's bytes
    /// after applying it.
    fn stream_and_target(old: &[u8]) -> (Vec<u8>, Vec<u8>) {
        stream_and_target_every(old, None)
    }

    /// [`stream_and_target`], with a checkpoint every `checkpoint_every` stream bytes.
    fn stream_and_target_every(old: &[u8], checkpoint_every: Option<u64>) -> (Vec<u8>, Vec<u8>) {
        let mut records = Vec::new();
        for i in 0..1100u64 {
            let fill = (i % 3 != 0).then_some((i % 250) as u8 + 1);
            records.push((i * 119 + 7, 50, fill));
        }
        records.push((3 * BLOCK + 1000, 3000, Some(0xAB)));
        let touched = records.iter().map(|r| r.1).sum();
        let header = Header {
            source: "t".into(),
            source_uuid: String::new(),
            device_size: Bytes(SIZE),
            base_size: Bytes(0),
            block_size: Bytes(4096),
            base: Fingerprint::NONE,
            target: Fingerprint([9; 32]),
            created_unix: 1,
            touched_bytes: Bytes(touched),
        };
        let mut w = StreamWriter::new(Vec::new(), "t", &header).unwrap();
        if let Some(every) = checkpoint_every {
            w.set_checkpoint_every(every);
        }
        let mut target = old.to_vec();
        for (offset, len, fill) in records {
            let plain = vec![fill.unwrap_or(0); len as usize];
            match fill {
                Some(_) => w
                    .data(&DataRecord {
                        offset,
                        plain_len: len as u32,
                        compression: Compression::None,
                        hash: *blake3::hash(&plain).as_bytes(),
                        payload: &plain,
                    })
                    .unwrap(),
                None => w.zero(offset, len).unwrap(),
            }
            target[offset as usize..(offset + len) as usize].copy_from_slice(&plain);
        }
        (w.finish().unwrap().0, target)
    }

    /// A destination written in whole pool blocks (a file standing in for a thin LV whose
    /// pool skips zeroing) ends equal to the target after an apply, and exactly as it was
    /// after one rolled back: records of three batches share one block, so journaling that
    /// block again for a later batch would record the first batch's new bytes, and the
    /// rollback would restore those.
    #[test]
    fn whole_block_destination_is_applied_and_rolled_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nz");
        let old: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8 | 0x80).collect();
        let (stream, target) = stream_and_target(&old);
        let opts = ApplyOptions::new(dir.path().join("state"));
        // Cut before its trailer: every batch but the last written, then rolled back.
        std::fs::write(&path, &old).unwrap();
        let d = Destination::skipping_zeroing_for_test(&path, BLOCK);
        let cut = &stream[..stream.len() - 30];
        assert!(apply_stream_held(cut, "cut", &d, &opts, &mut |_, _| {}).is_err());
        assert!(std::fs::read(&path).unwrap() == old, "rolled back exactly");
        apply_stream_held(&stream[..], "whole", &d, &opts, &mut |_, _| {}).unwrap();
        assert!(std::fs::read(&path).unwrap() == target, "applied exactly");
    }

    /// A destination written in whole pool blocks is never kept half-done: a resumable apply
    /// cut after its checkpoints is rolled back (its whole-block undo entries could not be
    /// continued by a resumed apply), and a resume into it is refused before anything is
    /// written (review finding: an apply resumed across a change of write mode tore it).
    #[test]
    fn whole_block_destination_is_not_kept_for_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nz");
        let old: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8 | 0x40).collect();
        let (stream, _) = stream_and_target_every(&old, Some(4096));
        let mut opts = ApplyOptions {
            resumable: true,
            ..ApplyOptions::new(dir.path().join("state"))
        };
        std::fs::write(&path, &old).unwrap();
        let d = Destination::skipping_zeroing_for_test(&path, BLOCK);
        let cut = &stream[..stream.len() - 30];
        let err = apply_stream_held(cut, "cut", &d, &opts, &mut |_, _| {}).unwrap_err();
        assert!(
            !err.to_string().contains("--resume"),
            "kept for resume: {err}"
        );
        assert!(std::fs::read(&path).unwrap() == old, "rolled back exactly");
        opts.resume = true;
        let err = apply_stream_held(&stream[..], "again", &d, &opts, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("skips zeroing") && err.contains("lvmsync recover"),
            "{err}"
        );
        assert!(
            std::fs::read(&path).unwrap() == old,
            "a refused resume wrote"
        );
    }
}
