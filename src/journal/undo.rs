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

use super::dest::{sync_dir, Destination, IO_PIECE};
use super::format::{
    encode_commit, encode_head, encode_old_data, encode_old_zero, encode_progress, JournalHead,
};
use crate::error::{Error, Result};
use crate::stream::encode::is_zero;
use crate::stream::record::Checkpoint;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Flush the in-memory journal buffer to the file past this size.
const BUF_LIMIT: usize = 4 << 20;

/// An open undo journal.
pub struct UndoJournal {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    entries: u64,
    scratch: Vec<u8>,
    progress: Option<Checkpoint>,
}

impl UndoJournal {
    /// Create the journal at `path` (refusing to overwrite one) and make its head durable.
    pub fn create(path: &Path, head: &JournalHead) -> Result<Self> {
        let err = |e| Error::io(path, e);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(err)?;
        file.write_all(&encode_head(head)).map_err(err)?;
        file.sync_data().map_err(err)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(UndoJournal {
            file,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(BUF_LIMIT + IO_PIECE as usize + 64),
            entries: 0,
            scratch: vec![0u8; IO_PIECE as usize],
            progress: None,
        })
    }

    /// Reopen a kept journal to continue a resumed apply: cut it to `len` bytes (just after
    /// its last progress frame, `entries` entries in) and append from there.
    pub fn reopen(path: &Path, len: u64, entries: u64, at: Checkpoint) -> Result<Self> {
        let err = |e| Error::io(path, e);
        let file = OpenOptions::new().write(true).open(path).map_err(err)?;
        file.set_len(len).map_err(err)?;
        file.sync_data().map_err(err)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(err)?;
        Ok(UndoJournal {
            file,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(BUF_LIMIT + IO_PIECE as usize + 64),
            entries,
            scratch: vec![0u8; IO_PIECE as usize],
            progress: Some(at),
        })
    }

    /// The newest checkpoint recorded as durable.
    pub fn progress(&self) -> Option<Checkpoint> {
        self.progress
    }

    /// Record that every record before checkpoint `cp` is durable in the destination (the
    /// caller synced it); a resumed apply continues from here.
    pub fn record_progress(&mut self, cp: Checkpoint) -> Result<()> {
        encode_progress(&cp, &mut self.buf);
        self.sync()?;
        self.progress = Some(cp);
        Ok(())
    }

    fn write_buf(&mut self) -> Result<()> {
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        self.buf.clear();
        Ok(())
    }

    /// Append the destination's current contents of `[offset, offset+len)` (not yet durable).
    pub fn save_old(&mut self, dest: &Destination, offset: u64, len: u64) -> Result<()> {
        let mut pos = offset;
        while pos < offset + len {
            let n = (offset + len - pos).min(IO_PIECE) as usize;
            dest.read_at(&mut self.scratch[..n], pos)?;
            if is_zero(&self.scratch[..n]) {
                encode_old_zero(pos, n as u64, &mut self.buf);
            } else {
                encode_old_data(pos, &self.scratch[..n], &mut self.buf);
            }
            self.entries += 1;
            pos += n as u64;
            if self.buf.len() >= BUF_LIMIT {
                self.write_buf()?;
            }
        }
        Ok(())
    }

    /// Make every entry appended so far durable (call before writing the destination).
    pub fn sync(&mut self) -> Result<()> {
        self.write_buf()?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Append and sync the commit frame: from here on, recovery rolls forward.
    pub fn commit(mut self, target: crate::stream::Fingerprint) -> Result<()> {
        encode_commit(self.entries, target, &mut self.buf);
        self.sync()
    }
}
