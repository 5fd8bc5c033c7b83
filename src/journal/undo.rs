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
//! Speed: the journal is written with `O_DIRECT` where the filesystem allows it, in whole
//! 4 KiB blocks from one aligned buffer that old bytes are read straight into (one copy,
//! no page cache to fill, throttle or drop on delete). The last block of each sync is
//! padded with zeroes, which end the valid prefix for a reader, and rewritten in full by the
//! next sync. Ranges of a regular file past its size before the apply are not journaled:
//! recovery cuts the file back to that size.

use super::dest::{sync_dir, Destination, IO_PIECE};
use super::format::{
    encode_commit, encode_head, encode_old_zero, encode_progress, finish_old_data_frame,
    old_data_frame_len, JournalHead, OLD_DATA_LEAD,
};
use crate::error::{Error, Result};
use crate::stream::encode::is_zero;
use crate::stream::record::Checkpoint;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Journal writes are whole blocks of this size at offsets that are multiples of it.
const BLOCK: usize = 4096;
/// The buffer: entries are written out once it is this full (and at every sync).
const WINDOW: usize = 8 << 20;

/// An open undo journal.
pub struct UndoJournal {
    file: File,
    path: PathBuf,
    /// Backing memory; the window is `mem[at..at + WINDOW]`, `at` chosen for alignment.
    mem: Vec<u8>,
    at: usize,
    /// Bytes of the window in use; the window's first byte is at `file_pos` in the file.
    used: usize,
    file_pos: u64,
    /// Appended since the last sync.
    pending: bool,
    /// Ranges at or past this offset need no entry (a regular file's size before the apply).
    undo_end: u64,
    entries: u64,
    progress: Option<Checkpoint>,
}

impl UndoJournal {
    /// Create the journal at `path` (refusing to overwrite one) and make its head durable.
    pub fn create(path: &Path, head: &JournalHead) -> Result<Self> {
        let file = open(path, true)?;
        let mut j = UndoJournal::new(file, path, 0, 0, None);
        j.undo_end = head.size_before;
        j.append(&encode_head(head))?;
        j.sync()?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(j)
    }

    /// Reopen a kept journal to continue a resumed apply: cut it to `len` bytes (just after
    /// its last progress frame, `entries` entries in) and append from there. `size_before`
    /// is the destination's size before the interrupted apply (from the journal head).
    pub fn reopen(
        path: &Path,
        len: u64,
        entries: u64,
        at: Checkpoint,
        size_before: u64,
    ) -> Result<Self> {
        let err = |e| Error::io(path, e);
        let file = open(path, false)?;
        file.set_len(len).map_err(err)?;
        file.sync_data().map_err(err)?;
        let start = len - len % BLOCK as u64;
        let mut j = UndoJournal::new(file, path, start, entries, Some(at));
        j.undo_end = size_before;
        j.used = (len - start) as usize;
        let tail = &mut j.mem[j.at..j.at + j.used];
        // The partial last block is rewritten by the next sync; read it back (buffered: the
        // direct-I/O flag is dropped for this one short read).
        let plain = File::open(path).map_err(err)?;
        plain.read_exact_at(tail, start).map_err(err)?;
        Ok(j)
    }

    fn new(file: File, path: &Path, file_pos: u64, entries: u64, p: Option<Checkpoint>) -> Self {
        let mem = vec![0u8; WINDOW + BLOCK];
        let at = mem.as_ptr().align_offset(BLOCK).min(BLOCK);
        UndoJournal {
            file,
            path: path.to_path_buf(),
            mem,
            at,
            used: 0,
            file_pos,
            pending: false,
            undo_end: u64::MAX,
            entries,
            progress: p,
        }
    }

    /// The newest checkpoint recorded as durable.
    pub fn progress(&self) -> Option<Checkpoint> {
        self.progress
    }

    /// Record that every record before checkpoint `cp` is durable in the destination (the
    /// caller synced it); a resumed apply continues from here.
    pub fn record_progress(&mut self, cp: Checkpoint) -> Result<()> {
        let mut f = Vec::new();
        encode_progress(&cp, &mut f);
        self.append(&f)?;
        self.sync()?;
        self.progress = Some(cp);
        Ok(())
    }

    /// Write the window's whole blocks (and, with `pad`, its zero-padded last block) at
    /// `file_pos`; keep the partial last block at the window's start.
    fn write_out(&mut self, pad: bool) -> Result<()> {
        let whole = self.used - self.used % BLOCK;
        let end = if pad {
            let padded = self.used.div_ceil(BLOCK) * BLOCK;
            self.mem[self.at + self.used..self.at + padded].fill(0);
            padded
        } else {
            whole
        };
        let w = self.at..self.at + end;
        if let Err(e) = self.file.write_all_at(&self.mem[w.clone()], self.file_pos) {
            // A filesystem that refuses direct I/O for this write: fall back to buffered.
            if e.raw_os_error() != Some(nix::libc::EINVAL) || !self.drop_direct() {
                return Err(Error::io(&self.path, e));
            }
            self.file
                .write_all_at(&self.mem[w], self.file_pos)
                .map_err(|e| Error::io(&self.path, e))?;
        }
        self.mem
            .copy_within(self.at + whole..self.at + self.used, self.at);
        self.used -= whole;
        self.file_pos += whole as u64;
        Ok(())
    }

    /// Clear `O_DIRECT` on the journal; false if it can't be.
    fn drop_direct(&self) -> bool {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        fcntl(&self.file, FcntlArg::F_GETFL)
            .map(|f| OFlag::from_bits_truncate(f) & !OFlag::O_DIRECT)
            .and_then(|f| fcntl(&self.file, FcntlArg::F_SETFL(f)))
            .is_ok()
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
        let at = self.at + self.used;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
        self.pending = true;
        Ok(())
    }

    /// Append the destination's current contents of `[offset, offset+len)` (not yet durable).
    pub fn save_old(&mut self, dest: &Destination, offset: u64, len: u64) -> Result<()> {
        let end = (offset + len).min(self.undo_end);
        let mut pos = offset;
        while pos < end {
            let n = (end - pos).min(IO_PIECE) as usize;
            let frame_len = old_data_frame_len(n);
            self.reserve(frame_len)?;
            let at = self.at + self.used;
            let frame = &mut self.mem[at..at + frame_len];
            dest.read_at(&mut frame[OLD_DATA_LEAD..OLD_DATA_LEAD + n], pos)?;
            if is_zero(&frame[OLD_DATA_LEAD..OLD_DATA_LEAD + n]) {
                let mut f = Vec::new();
                encode_old_zero(pos, n as u64, &mut f);
                self.append(&f)?;
            } else {
                finish_old_data_frame(pos, frame);
                self.used += frame_len;
                self.pending = true;
            }
            self.entries += 1;
            pos += n as u64;
        }
        Ok(())
    }

    /// Make every entry appended so far durable (call before writing the destination).
    pub fn sync(&mut self) -> Result<()> {
        if !self.pending {
            return Ok(());
        }
        self.write_out(true)?;
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))?;
        self.pending = false;
        Ok(())
    }

    /// Append and sync the commit frame: from here on, recovery rolls forward.
    pub fn commit(mut self, target: crate::stream::Fingerprint) -> Result<()> {
        let mut f = Vec::new();
        encode_commit(self.entries, target, &mut f);
        self.append(&f)?;
        self.sync()
    }
}

/// Open the journal for writing (`create`: a new file, refusing to replace one) with
/// `O_DIRECT` if the filesystem allows it, else buffered.
fn open(path: &Path, create: bool) -> Result<File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let file = OpenOptions::new()
        .write(true)
        .create_new(create)
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
