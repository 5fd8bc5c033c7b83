//! The undo journal's writer thread: journal writes and syncs leave the journaling thread.
//!
//! [`super::undo::UndoJournal`] fills aligned buffers with frames and hands each one (whole
//! 4 KiB blocks, for `O_DIRECT`) to this thread, which writes them in order while the
//! journaling thread reads the next old bytes into another buffer ([`BUFFERS`] in all, so
//! memory stays bounded). A *sync* is queued behind the writes it covers and numbered (its
//! *ticket*): once they are written the thread asks a syncing thread to fdatasync the
//! journal and mark the ticket durable, and goes on writing meanwhile (requests that pile
//! up while an fdatasync runs are served by the next one). Whoever must not touch the destination before those entries are durable waits
//! for the ticket ([`Durable::wait`]) — the journaling thread itself, or the apply
//! pipeline's writer, so that journaling the next batch overlaps this batch's fdatasync.
//!
//! Between syncs, after every [`FLUSH_BEHIND`] bytes written, the syncing thread is asked for
//! a background fdatasync (no ticket), so the disk makes a long journal durable while it is
//! still being written instead of all at once in the next sync. A failed write or sync fails every later
//! wait: nothing is reported durable after a failure.
//!
//! Under the crash-test hook (`LVMSYNC_TEST_SLOW_MS`) the thread keeps each write in memory
//! until the next sync, as a power cut loses what was written but not synced: then a
//! `kill -9` also loses it, and a destination write made before its journal sync is no longer
//! undone by recovery, which the crash tests see.

use super::test_hooks;
use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

/// Journal writes are whole blocks of this size at offsets that are multiples of it.
pub(super) const BLOCK: usize = 4096;
/// Bytes of a buffer; a full buffer is handed to the writer thread.
pub(super) const WINDOW: usize = 8 << 20;
/// Buffers in all: one being filled, the rest queued or being written.
const BUFFERS: usize = 3;
/// Writes of at least twice this are split in two written at once.
const PARALLEL_MIN: usize = 1 << 20;
/// Between two syncs, ask for a background fdatasync after this many bytes written.
const FLUSH_BEHIND: u64 = 64 << 20;

/// A [`WINDOW`]-byte buffer aligned to [`BLOCK`] (for `O_DIRECT`).
pub(super) struct Buf {
    mem: Vec<u8>,
    at: usize,
}

impl Buf {
    fn new() -> Self {
        let mem = vec![0u8; WINDOW + BLOCK];
        let at = mem.as_ptr().align_offset(BLOCK).min(BLOCK);
        Buf { mem, at }
    }

    /// The aligned window.
    pub(super) fn bytes(&mut self) -> &mut [u8] {
        &mut self.mem[self.at..self.at + WINDOW]
    }
}

enum Job {
    /// Write the first `len` bytes of the buffer at `pos`, then return the buffer.
    Write { buf: Buf, len: usize, pos: u64 },
    /// fdatasync everything written so far, then mark this ticket durable.
    Sync(u64),
}

#[derive(Default)]
struct State {
    synced: u64,
    failed: Option<(std::io::ErrorKind, String)>,
}

/// Which syncs of a journal are done (shared with whoever waits for them).
#[derive(Clone)]
pub(crate) struct Durable {
    inner: Arc<(Mutex<State>, Condvar)>,
    path: PathBuf,
}

impl Durable {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until the sync numbered `ticket` is done: every journal entry appended before it
    /// is durable. An error if a journal write or sync failed.
    pub(crate) fn wait(&self, ticket: u64) -> Result<()> {
        let mut st = self.state();
        loop {
            if let Some((kind, msg)) = &st.failed {
                let e = std::io::Error::new(*kind, msg.clone());
                return Err(Error::io(&self.path, e));
            }
            if st.synced >= ticket {
                return Ok(());
            }
            st = self.inner.1.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn failed(&self) -> bool {
        self.state().failed.is_some()
    }

    fn fail(&self, e: std::io::Error) {
        self.state()
            .failed
            .get_or_insert_with(|| (e.kind(), e.to_string()));
        self.inner.1.notify_all();
    }

    fn synced(&self, ticket: u64) {
        self.state().synced = ticket;
        self.inner.1.notify_all();
    }
}

/// The journaling thread's end of the writer thread.
pub(super) struct JournalWriter {
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Buf>,
    /// Buffers allocated so far (at most [`BUFFERS`]).
    allocated: usize,
    /// The newest sync queued.
    ticket: u64,
    durable: Durable,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl JournalWriter {
    /// Start the writer thread for `file` (the journal at `path`).
    pub(super) fn start(file: File, path: &Path) -> Self {
        let (jobs, queue) = sync_channel::<Job>(BUFFERS);
        let (give_back, free) = sync_channel::<Buf>(BUFFERS);
        let durable = Durable {
            inner: Arc::default(),
            path: path.to_path_buf(),
        };
        let d = durable.clone();
        let thread = std::thread::spawn(move || {
            let _stop = FailOnPanic(&d);
            write_jobs(&file, &queue, &give_back, &d)
        });
        JournalWriter {
            jobs: Some(jobs),
            free,
            allocated: 0,
            ticket: 0,
            durable,
            thread: Some(thread),
        }
    }

    /// A buffer to fill: a written one, a new one, or the next whose write finishes.
    pub(super) fn buffer(&mut self) -> Result<Buf> {
        if let Ok(b) = self.free.try_recv() {
            return Ok(b);
        }
        if self.allocated < BUFFERS {
            self.allocated += 1;
            return Ok(Buf::new());
        }
        self.free.recv().map_err(|_| self.stopped())
    }

    /// Queue writing the first `len` bytes of `buf` at `pos`.
    pub(super) fn write(&mut self, buf: Buf, len: usize, pos: u64) -> Result<()> {
        self.send(Job::Write { buf, len, pos })
    }

    /// Queue a sync of everything queued so far; returns its ticket.
    pub(super) fn sync(&mut self) -> Result<u64> {
        self.ticket += 1;
        self.send(Job::Sync(self.ticket))?;
        Ok(self.ticket)
    }

    /// The newest sync queued (0: none).
    pub(super) fn ticket(&self) -> u64 {
        self.ticket
    }

    /// Who may wait for syncs.
    pub(super) fn durable(&self) -> &Durable {
        &self.durable
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("open until dropped");
        jobs.send(job).map_err(|_| self.stopped())
    }

    /// The thread only ends when dropped or after a panic; report it as a failed write.
    fn stopped(&self) -> Error {
        let e = std::io::Error::other("the journal writer thread stopped");
        Error::io(&self.durable.path, e)
    }
}

impl Drop for JournalWriter {
    /// Finish the queued writes before the journal is read, renamed or reused.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Held by the writer thread: should it panic, every wait for a ticket fails instead of
/// waiting forever for a sync that will never come (nothing is reported durable).
struct FailOnPanic<'a>(&'a Durable);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fail(std::io::Error::other("the journal writer thread panicked"));
        }
    }
}

/// The writer thread: run `queue`'s jobs in order; syncs run on a second thread.
fn write_jobs(file: &File, queue: &Receiver<Job>, give_back: &SyncSender<Buf>, d: &Durable) {
    let mut unflushed = 0u64;
    // Under the crash-test hook: writes not yet synced (see the module's comment).
    let volatile = test_hooks::slow_ms() > 0;
    let mut unsynced: Vec<(Vec<u8>, u64)> = Vec::new();
    std::thread::scope(|s| {
        // Tickets to sync (0: a background flush); at most one per queued sync.
        let (syncs, requests) = channel::<u64>();
        s.spawn(move || {
            let _stop = FailOnPanic(d);
            sync_requests(file, &requests, d);
        });
        for job in queue.iter() {
            match job {
                Job::Write { mut buf, len, pos } if volatile => {
                    unsynced.push((buf.bytes()[..len].to_vec(), pos));
                    let _ = give_back.send(buf);
                }
                Job::Write { mut buf, len, pos } => {
                    // After a failure nothing more is written: no later sync can succeed.
                    if !d.failed() {
                        match write_direct(file, &buf.bytes()[..len], pos) {
                            Ok(()) => unflushed += len as u64,
                            Err(e) => d.fail(e),
                        }
                    }
                    if unflushed >= FLUSH_BEHIND {
                        let _ = syncs.send(0);
                        unflushed = 0;
                    }
                    let _ = give_back.send(buf);
                }
                Job::Sync(ticket) => {
                    if volatile {
                        // The writes reach the file only now, after a pause: a slow sync, so
                        // a destination write made too early has time to be seen by a kill.
                        test_hooks::delay();
                        for (bytes, pos) in unsynced.drain(..) {
                            if let Err(e) = write_direct(file, &bytes, pos) {
                                d.fail(e);
                            }
                        }
                    }
                    // Every write before this one is done: an fdatasync from now on covers it.
                    let _ = syncs.send(ticket);
                    unflushed = 0;
                }
            }
        }
    });
}

/// The syncing thread: for each batch of requests that arrived meanwhile, one fdatasync,
/// then mark the newest ticket among them durable. A failed fdatasync fails every later
/// wait (the kernel reports a writeback error to one sync only, so nothing after it may be
/// called durable).
fn sync_requests(file: &File, requests: &Receiver<u64>, d: &Durable) {
    while let Ok(first) = requests.recv() {
        let ticket = requests.try_iter().fold(first, u64::max);
        match file.sync_data() {
            Ok(()) if ticket > 0 && !d.failed() => d.synced(ticket),
            Ok(()) => {}
            Err(e) => d.fail(e),
        }
    }
}

/// Write `buf` at `pos`; a filesystem that refuses direct I/O for it gets a buffered write.
fn write_direct(file: &File, buf: &[u8], pos: u64) -> std::io::Result<()> {
    match write_halves(file, buf, pos) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) && drop_direct(file) => {
            file.write_all_at(buf, pos)
        }
        r => r,
    }
}

/// Clear `O_DIRECT` on the journal; false if it can't be.
fn drop_direct(file: &File) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(file, FcntlArg::F_GETFL)
        .map(|f| OFlag::from_bits_truncate(f) & !OFlag::O_DIRECT)
        .and_then(|f| fcntl(file, FcntlArg::F_SETFL(f)))
        .is_ok()
}

/// Write `buf` at `pos`; a large buffer as two halves at once (on a second thread), which
/// keeps more of the disk busy: `O_DIRECT` writes are synchronous, and two in flight went
/// ~1.6x as fast as one on the benchmark machine's virtual disk.
fn write_halves(file: &File, buf: &[u8], pos: u64) -> std::io::Result<()> {
    if buf.len() < 2 * PARALLEL_MIN {
        return file.write_all_at(buf, pos);
    }
    let mid = buf.len() / 2 / BLOCK * BLOCK;
    let (a, b) = buf.split_at(mid);
    std::thread::scope(|s| {
        let second = s.spawn(|| file.write_all_at(b, pos + mid as u64));
        let first = file.write_all_at(a, pos);
        first.and(second.join().expect("a journal write does not panic"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A writer thread that panics must fail the waits for its tickets: without the guard
    /// a pipeline writer waiting for a sync would wait forever.
    #[test]
    fn a_panicking_writer_thread_fails_every_wait() {
        let durable = Durable {
            inner: Arc::default(),
            path: PathBuf::from("journal"),
        };
        let held = durable.clone();
        let writer = std::thread::spawn(move || {
            let _stop = FailOnPanic(&held);
            panic!("a bug in the writer thread");
        });
        assert!(writer.join().is_err());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(durable.wait(1).map_err(|e| e.to_string())));
        let got = rx.recv_timeout(Duration::from_secs(20)).expect("wait hung");
        let err = got.unwrap_err();
        assert!(err.contains("writer thread panicked"), "{err}");
    }
}
