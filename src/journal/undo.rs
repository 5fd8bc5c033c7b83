//! Writing the undo journal during an apply.
//!
//! The order of writes is what makes the destination crash-safe:
//! 1. head written and fdatasync'ed, journal directory fsync'ed (the journal exists);
//! 2. for each batch: old contents of every range the batch overwrites appended, then
//!    fdatasync — only then are the batch's new bytes written to the destination;
//! 3. destination fdatasync'ed, then the commit frame appended and fdatasync'ed.
//!
//! A crash before 3 completes leaves a journal without commit: recovery restores every
//! journaled range, which covers every range that may have been written.
//!
//! **Recycling.** A finished journal (committed, or rolled back) is not deleted but renamed
//! to the destination's *spare* (`<key>.spare`), which recovery never reads; the next apply
//! takes it back: it writes a head with the next generation (same nonce) into the spare, makes it
//! durable, and only then renames it to `<key>.journal`. Its blocks are overwritten in place
//! instead of being freed and allocated again (deleting a 1 GiB journal costs ~1 s on a
//! disk with discard), and frames left from earlier generations never read as valid (see
//! [`super::format`]). A new journal is preallocated (`fallocate`) to the apply's worst case.
//! The spare is cut back to that worst case when it is over twice as large plus
//! [`SPARE_SLACK`], and `lvmsync recover --drop-spare` deletes it.
//!
//! Speed: the journal is written with `O_DIRECT` where the filesystem allows it, in whole
//! 4 KiB blocks from one aligned buffer that old bytes are read straight into (one copy,
//! no page cache to fill, throttle or drop on delete). The last block of each sync is
//! padded with zeroes, which end the valid prefix for a reader, and rewritten in full by the
//! next sync. Ranges past the apply's [`UndoSpan`] are not journaled: a regular file's part
//! past its size before the apply (recovery cuts the file back to that size), and the part of
//! a destination past an incremental stream's base size (not part of the base state; written
//! in full, its old bytes never assumed to be zeroes). Pieces whose old bytes equal the bytes
//! about to be written get no entry (and the write can be skipped); holes of a file are
//! journaled as zeroes without being read.

use super::dest::{sync_dir, Destination, IO_PIECE};
use super::format::{
    encode_commit, encode_head, encode_old_zero, encode_progress, finish_old_data_frame,
    old_data_frame_len, JournalHead, JournalId, JournalReader, OLD_DATA_LEAD,
};
use super::span::UndoSpan;
use super::state::DestPaths;
use super::writer::{Buf, Durable, JournalWriter, BLOCK, WINDOW};
use crate::error::{Error, Result};
use crate::stream::encode::is_zero;
use crate::stream::record::Checkpoint;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A spare larger than twice an apply's worst-case journal plus this is cut back to it.
pub const SPARE_SLACK: u64 = 64 << 20;

/// An open undo journal.
pub struct UndoJournal {
    /// Writes and syncs the filled windows on its own thread.
    io: JournalWriter,
    /// The buffer being filled with frames.
    win: Buf,
    /// Bytes of the window in use; the window's first byte is at `file_pos` in the file.
    used: usize,
    file_pos: u64,
    /// Appended since the last sync.
    pending: bool,
    /// Which ranges get entries, and which read as zeroes.
    span: UndoSpan,
    entries: u64,
    progress: Option<Checkpoint>,
    /// CRC seed of this journal's nonce and generation.
    seed: u32,
}

/// What an apply is about to write over a range, so [`UndoJournal::save_old`] can leave
/// out the pieces that would not change.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// Not known (a delta file's verifying pass knows only the ranges).
    Unknown,
    /// Zeroes (a zero or discard record).
    Zeroes,
    /// These bytes, as long as the range.
    Data(&'a [u8]),
}

impl UndoJournal {
    /// Start the undo journal of a new apply to the destination of `paths`, journaling the
    /// old bytes of `span`: take its spare (or a new file), preallocate `need` bytes, write
    /// `head` under the next generation and make it durable, and only then name the file
    /// `paths.journal` (refusing to replace one).
    pub fn create(
        paths: &DestPaths,
        head: &JournalHead,
        span: UndoSpan,
        need: u64,
    ) -> Result<Self> {
        let spare = &paths.spare;
        let err = |e| Error::io(spare, e);
        let before = match File::open(spare) {
            Ok(f) => JournalReader::open(std::io::BufReader::new(f))
                .map_err(err)?
                .and_then(|r| r.id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(e)),
        };
        let file = open(spare, true)?;
        let len = file.metadata().map_err(err)?.len();
        let (nonce, generation) = match before {
            Some(JournalId {
                nonce: Some(nonce),
                generation,
            }) if generation < u32::MAX => (nonce, generation + 1),
            // A new, torn or older-version file, or a wrapping generation: no stale frame
            // may stay, and the file starts over with a new nonce.
            _ => {
                if len > 0 {
                    file.set_len(0).map_err(err)?;
                }
                (random_nonce().map_err(err)?, 1)
            }
        };
        let nonce_gen = JournalId {
            nonce: Some(nonce),
            generation,
        };
        if len > need.saturating_mul(2).saturating_add(SPARE_SLACK) {
            file.set_len(need).map_err(err)?;
        }
        preallocate(&file, need);
        debug_assert_eq!(head.size_before, span.size_before);
        let seed = nonce_gen.crc_seed();
        let mut j = UndoJournal::new(file, &paths.journal, span, 0, 0, None, seed)?;
        // The writer names the file by the name it has during the apply; until the rename
        // below it is still the spare, so its errors here name the spare.
        let at_spare = |e: Error| match e {
            Error::Io { source, .. } => Error::io(spare, source),
            e => e,
        };
        j.append(&encode_head(head, nonce, generation))
            .map_err(at_spare)?;
        j.sync().map_err(at_spare)?;
        rename_noreplace(spare, &paths.journal)?;
        sync_dir(&paths.dir)?;
        Ok(j)
    }

    /// Reopen a kept journal to continue a resumed apply: cut it to `len` bytes (just after
    /// its last progress frame, `entries` entries in) and append from there with CRC seed
    /// `seed` (its generation's), journaling the old bytes of `span` (the interrupted
    /// apply's: from its stream header and the journal head's size before).
    pub fn reopen(
        path: &Path,
        len: u64,
        entries: u64,
        at: Checkpoint,
        span: UndoSpan,
        seed: u32,
    ) -> Result<Self> {
        let err = |e| Error::io(path, e);
        let file = open(path, false)?;
        file.set_len(len).map_err(err)?;
        file.sync_data().map_err(err)?;
        let start = len - len % BLOCK as u64;
        let mut j = UndoJournal::new(file, path, span, start, entries, Some(at), seed)?;
        j.used = (len - start) as usize;
        let tail = &mut j.win.bytes()[..j.used];
        // The partial last block is rewritten by the next sync; read it back (buffered: the
        // direct-I/O flag is dropped for this one short read).
        let plain = File::open(path).map_err(err)?;
        plain.read_exact_at(tail, start).map_err(err)?;
        Ok(j)
    }

    /// `file` opened for writing, named `path` (the name it has during the apply).
    fn new(
        file: File,
        path: &Path,
        span: UndoSpan,
        file_pos: u64,
        entries: u64,
        p: Option<Checkpoint>,
        seed: u32,
    ) -> Result<Self> {
        let mut io = JournalWriter::start(file, path);
        Ok(UndoJournal {
            win: io.buffer()?,
            io,
            used: 0,
            file_pos,
            pending: false,
            span,
            entries,
            progress: p,
            seed,
        })
    }

    /// The newest checkpoint recorded as durable.
    pub fn progress(&self) -> Option<Checkpoint> {
        self.progress
    }

    /// Record that every record before checkpoint `cp` is durable in the destination (the
    /// caller synced it); a resumed apply continues from here.
    pub fn record_progress(&mut self, cp: Checkpoint) -> Result<()> {
        let mut f = Vec::new();
        encode_progress(self.seed, &cp, &mut f);
        self.append(&f)?;
        self.sync()?;
        self.progress = Some(cp);
        Ok(())
    }

    /// Hand the window's whole blocks (and, with `pad`, its zero-padded last block) to the
    /// writer thread, to be written at `file_pos`; continue in a fresh buffer that starts
    /// with the partial last block (rewritten in full by a later write).
    fn write_out(&mut self, pad: bool) -> Result<()> {
        let whole = self.used - self.used % BLOCK;
        let end = if pad {
            self.used.div_ceil(BLOCK) * BLOCK
        } else {
            whole
        };
        if end == 0 {
            return Ok(());
        }
        let mut next = self.io.buffer()?;
        let w = self.win.bytes();
        next.bytes()[..self.used - whole].copy_from_slice(&w[whole..self.used]);
        if pad {
            w[self.used..end].fill(0);
        }
        let full = std::mem::replace(&mut self.win, next);
        self.io.write(full, end, self.file_pos)?;
        self.used -= whole;
        self.file_pos += whole as u64;
        Ok(())
    }

    /// Make room for `n` more bytes in the window.
    fn reserve(&mut self, n: usize) -> Result<()> {
        if self.used + n > WINDOW {
            self.write_out(false)?;
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.reserve(bytes.len())?;
        let at = self.used;
        self.win.bytes()[at..at + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
        self.pending = true;
        Ok(())
    }

    /// Append the destination's current contents of `[offset, offset+len)` (not yet
    /// durable), leaving out pieces (of up to 1 MiB) that hold exactly what `incoming` will
    /// write. Returns false if no byte of the range would change (the write may be skipped).
    pub fn save_old(
        &mut self,
        dest: &Destination,
        offset: u64,
        len: u64,
        incoming: Incoming<'_>,
    ) -> Result<bool> {
        let end = (offset + len).min(self.span.end);
        // Past the span: no entry. Past a grown file's old end it reads as zeroes (recovery
        // cuts it off); before that (past an incremental stream's base size) it holds old,
        // unjournaled bytes, which are always overwritten.
        let mut changed = (offset + len > end && !matches!(incoming, Incoming::Zeroes))
            || self.span.unjournaled_old(offset, len);
        let mut holes = dest.holes();
        let mut pos = offset;
        while pos < end {
            let n = (end - pos).min(IO_PIECE) as usize;
            let new = match incoming {
                Incoming::Data(d) => Some(&d[(pos - offset) as usize..][..n]),
                _ => None,
            };
            let zero_entry = if holes.is_hole(pos, pos + n as u64) {
                // Reads as zeroes: nothing to read or store but the fact.
                let same = matches!(incoming, Incoming::Zeroes) || new.is_some_and(is_zero);
                changed |= !same;
                !same
            } else {
                let frame_len = old_data_frame_len(n);
                self.reserve(frame_len)?;
                let at = self.used;
                let frame = &mut self.win.bytes()[at..at + frame_len];
                let old = &mut frame[OLD_DATA_LEAD..OLD_DATA_LEAD + n];
                dest.read_at(old, pos)?;
                let old_zero = is_zero(old);
                let same = match incoming {
                    Incoming::Unknown => false,
                    Incoming::Zeroes => old_zero,
                    Incoming::Data(_) => new == Some(&*old),
                };
                changed |= !same;
                if !same && !old_zero {
                    finish_old_data_frame(self.seed, pos, frame);
                    self.used += frame_len;
                    self.pending = true;
                    self.entries += 1;
                }
                !same && old_zero
            };
            if zero_entry {
                let mut f = Vec::new();
                encode_old_zero(self.seed, pos, n as u64, &mut f);
                self.append(&f)?;
                self.entries += 1;
            }
            pos += n as u64;
        }
        Ok(changed)
    }

    /// Make every entry appended so far durable (call before writing the destination).
    pub fn sync(&mut self) -> Result<()> {
        let ticket = self.sync_begin()?;
        self.io.durable().wait(ticket)
    }

    /// Queue making every entry appended so far durable, without waiting: returns the
    /// ticket to wait for ([`Self::durable`]) before writing the destination.
    pub(crate) fn sync_begin(&mut self) -> Result<u64> {
        if self.pending {
            self.write_out(true)?;
            self.io.sync()?;
            self.pending = false;
        }
        Ok(self.io.ticket())
    }

    /// Whom to ask whether a sync ticket is done (shareable with another thread).
    pub(crate) fn durable(&self) -> Durable {
        self.io.durable().clone()
    }

    /// Append and sync the commit frame: from here on, recovery rolls forward. Returns the
    /// journal's length up to and including the commit.
    pub fn commit(mut self, target: crate::stream::Fingerprint) -> Result<u64> {
        let mut f = Vec::new();
        encode_commit(self.seed, self.entries, target, &mut f);
        self.append(&f)?;
        self.sync()?;
        Ok(self.file_pos + self.used as u64)
    }
}

/// Keep a finished journal (committed and recorded, or rolled back) as the destination's
/// spare for the next apply to reuse; recovery does not look at spares.
pub fn retire(paths: &DestPaths) -> Result<()> {
    std::fs::rename(&paths.journal, &paths.spare).map_err(|e| Error::io(&paths.journal, e))?;
    sync_dir(&paths.dir)
}

/// Delete the destination's spare journal (`recover --drop-spare`), freeing its space; the
/// next apply then starts a new journal. False if there was none.
pub fn drop_spare(paths: &DestPaths) -> Result<bool> {
    match std::fs::remove_file(&paths.spare) {
        Ok(()) => sync_dir(&paths.dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&paths.spare, e)),
    }
}

/// Allocate the first `len` bytes of `file` (extending it) so the journal's writes need no
/// block allocation; best effort: a filesystem without `fallocate` allocates as it writes.
fn preallocate(file: &File, len: u64) {
    use nix::fcntl::{fallocate, FallocateFlags};
    if let Ok(len) = i64::try_from(len) {
        let _ = fallocate(file, FallocateFlags::empty(), 0, len);
    }
}

/// A random journal nonce (see [`super::format`]), from the kernel's random source.
fn random_nonce() -> std::io::Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Rename `from` to `to`, failing if `to` exists (an active journal is never replaced).
fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // A filesystem without RENAME_NOREPLACE: check, then rename (the destination's lock
        // keeps other lvmsyncs out meanwhile).
        Err(nix::errno::Errno::EINVAL) if !to.exists() => {
            std::fs::rename(from, to).map_err(|e| Error::io(to, e))
        }
        Err(e) => Err(Error::io(to, std::io::Error::from(e))),
    }
}

/// Open the journal for writing (`create`: create it if missing) with `O_DIRECT` if the
/// filesystem allows it, else buffered.
fn open(path: &Path, create: bool) -> Result<File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let file = OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    // Set after opening (the mirror of `drop_direct`), so a filesystem without `O_DIRECT`
    // needs no second open; it refuses the flag with EINVAL and the journal stays buffered.
    let direct = fcntl(&file, FcntlArg::F_GETFL)
        .map(|f| OFlag::from_bits_truncate(f) | OFlag::O_DIRECT)
        .and_then(|f| fcntl(&file, FcntlArg::F_SETFL(f)));
    match direct {
        Ok(_) | Err(nix::errno::Errno::EINVAL) => Ok(file),
        Err(e) => Err(Error::io(path, std::io::Error::from(e))),
    }
}
