//! The undo journal's on-disk format, in the stream's framing.
//!
//! ```text
//! "LVMSJRNL" + version u16
//! J head     dest path, size before, device size, base fp, target fp, created, source
//! U old data offset u64 + the bytes the destination held there (≤ 1 MiB)
//! O old zero offset u64 + length u64 (the range held zeroes; nothing to store)
//! P progress a stream checkpoint (64 bytes) whose records are all durable in the
//!            destination (written with `--resumable`; where a resumed apply continues)
//! K commit   number of undo entries u64 + target fp
//! ```
//!
//! Each frame has its CRC. A reader takes the longest valid prefix: a torn tail can only
//! hold entries whose destination writes never started, because every batch of entries is
//! fdatasync'ed before the destination is touched.

use crate::stream::frame::{
    encode_frame, put_string, read_frame, Cursor, Frame, FrameError, FRAME_CRC_LEN, FRAME_HEAD_LEN,
};
use crate::stream::record::Checkpoint;
use crate::stream::Fingerprint;
use std::io::Read;

/// First eight bytes of a journal.
pub const JOURNAL_MAGIC: [u8; 8] = *b"LVMSJRNL";
/// Journal format version.
pub const JOURNAL_VERSION: u16 = 1;

const TAG_HEAD: u8 = b'J';
const TAG_OLD_DATA: u8 = b'U';
const TAG_OLD_ZERO: u8 = b'O';
const TAG_COMMIT: u8 = b'K';
const TAG_PROGRESS: u8 = b'P';

/// The journal head: which destination, and which apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalHead {
    /// Canonical destination path.
    pub dest: String,
    /// Destination size before the apply (a grown file is cut back to it on rollback).
    pub size_before: u64,
    /// The stream's device size.
    pub device_size: u64,
    /// State the apply starts from.
    pub base: Fingerprint,
    /// State the apply leads to.
    pub target: Fingerprint,
    /// When the apply started (Unix seconds).
    pub created_unix: u64,
    /// The stream's source, recorded into the state file on commit.
    pub source: String,
}

/// One undo entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoEntry {
    /// The destination held `data` at `offset`.
    Data {
        /// Destination offset.
        offset: u64,
        /// The old bytes.
        data: Vec<u8>,
    },
    /// The destination held zeroes over `offset..offset+len`.
    Zero {
        /// Destination offset.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// Preamble + head frame.
pub fn encode_head(h: &JournalHead) -> Vec<u8> {
    let mut p = Vec::new();
    put_string(&mut p, &h.dest);
    p.extend_from_slice(&h.size_before.to_le_bytes());
    p.extend_from_slice(&h.device_size.to_le_bytes());
    p.extend_from_slice(&h.base.0);
    p.extend_from_slice(&h.target.0);
    p.extend_from_slice(&h.created_unix.to_le_bytes());
    put_string(&mut p, &h.source);
    let mut out = JOURNAL_MAGIC.to_vec();
    out.extend_from_slice(&JOURNAL_VERSION.to_le_bytes());
    encode_frame(TAG_HEAD, &p, &mut out);
    out
}

/// Bytes an "old data" frame adds before its data: frame head + offset.
pub const OLD_DATA_LEAD: usize = FRAME_HEAD_LEN + 8;

/// Bytes an "old data" frame of `n` data bytes takes in the journal.
pub const fn old_data_frame_len(n: usize) -> usize {
    OLD_DATA_LEAD + n + FRAME_CRC_LEN
}

/// Complete an "old data" frame in place: `frame` is [`old_data_frame_len`]`(n)` bytes
/// whose data (`n` bytes at [`OLD_DATA_LEAD`]) the caller has already read there, so the
/// old bytes are copied once, from the destination straight into the journal's buffer.
pub fn finish_old_data_frame(offset: u64, frame: &mut [u8]) {
    let payload = frame.len() - FRAME_HEAD_LEN - FRAME_CRC_LEN;
    let len = u32::try_from(payload).expect("old data pieces are at most 1 MiB");
    frame[0] = TAG_OLD_DATA;
    frame[1..FRAME_HEAD_LEN].copy_from_slice(&len.to_le_bytes());
    frame[FRAME_HEAD_LEN..OLD_DATA_LEAD].copy_from_slice(&offset.to_le_bytes());
    let body = frame.len() - FRAME_CRC_LEN;
    let crc = crc32c::crc32c(&frame[..body]);
    frame[body..].copy_from_slice(&crc.to_le_bytes());
}

/// Append an "old zeroes" entry's frame.
pub fn encode_old_zero(offset: u64, len: u64, out: &mut Vec<u8>) {
    encode_frame(
        TAG_OLD_ZERO,
        &crate::stream::record::encode_range(offset, len),
        out,
    );
}

/// Append a progress frame: checkpoint `cp` is durable.
pub fn encode_progress(cp: &Checkpoint, out: &mut Vec<u8>) {
    encode_frame(TAG_PROGRESS, &cp.encode(), out);
}

/// The newest durable progress frame of a journal, and where the journal stood after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The stream checkpoint reached.
    pub checkpoint: Checkpoint,
    /// Undo entries before it.
    pub entries: u64,
    /// Journal bytes up to and including it.
    pub journal_len: u64,
}

/// Append the commit frame.
pub fn encode_commit(entries: u64, target: Fingerprint, out: &mut Vec<u8>) {
    let mut p = entries.to_le_bytes().to_vec();
    p.extend_from_slice(&target.0);
    encode_frame(TAG_COMMIT, &p, out);
}

/// Reads a journal: the head, then entries up to the first bad frame or the commit.
pub struct JournalReader<R: Read> {
    input: R,
    frame: Frame,
    /// The decoded head.
    pub head: JournalHead,
    /// Set once the commit frame has been read and matched.
    pub committed: bool,
    /// The newest valid progress frame read so far.
    pub progress: Option<Progress>,
    entries: u64,
    pos: u64,
}

impl<R: Read> JournalReader<R> {
    /// Read the preamble and head; `None` if they are missing or torn (so nothing was
    /// written to the destination under this journal).
    pub fn open(mut input: R) -> std::io::Result<Option<Self>> {
        let mut pre = [0u8; 10];
        if input.read_exact(&mut pre).is_err()
            || pre[..8] != JOURNAL_MAGIC
            || u16::from_le_bytes([pre[8], pre[9]]) != JOURNAL_VERSION
        {
            return Ok(None);
        }
        let mut frame = Frame::default();
        match read_frame(&mut input, &mut frame) {
            Ok(()) if frame.tag == TAG_HEAD => {}
            Err(FrameError::Io(e)) => return Err(e),
            _ => return Ok(None),
        }
        let head = (|| {
            let mut c = Cursor::new(frame.payload());
            let h = JournalHead {
                dest: c.string()?,
                size_before: c.u64()?,
                device_size: c.u64()?,
                base: Fingerprint(c.hash()?),
                target: Fingerprint(c.hash()?),
                created_unix: c.u64()?,
                source: c.string()?,
            };
            c.is_done().then_some(h)
        })();
        let pos = (pre.len() + frame.raw.len()) as u64;
        Ok(head.map(|head| JournalReader {
            input,
            frame,
            head,
            committed: false,
            progress: None,
            entries: 0,
            pos,
        }))
    }

    /// The next valid entry, or `None` at the end of the valid prefix or at the commit.
    pub fn next_entry(&mut self) -> std::io::Result<Option<UndoEntry>> {
        if self.committed {
            return Ok(None);
        }
        match read_frame(&mut self.input, &mut self.frame) {
            Ok(()) => {}
            Err(FrameError::Io(e)) => return Err(e),
            Err(_) => return Ok(None),
        }
        self.pos += self.frame.raw.len() as u64;
        let p = self.frame.payload();
        let mut c = Cursor::new(p);
        let entry = match self.frame.tag {
            TAG_PROGRESS => {
                if let Ok(checkpoint) = Checkpoint::decode(p) {
                    self.progress = Some(Progress {
                        checkpoint,
                        entries: self.entries,
                        journal_len: self.pos,
                    });
                }
                return self.next_entry();
            }
            TAG_OLD_DATA => c.u64().map(|offset| UndoEntry::Data {
                offset,
                data: c.rest().to_vec(),
            }),
            TAG_OLD_ZERO => crate::stream::record::decode_range(p)
                .ok()
                .map(|(offset, len)| UndoEntry::Zero { offset, len }),
            TAG_COMMIT => {
                if c.u64() == Some(self.entries) && c.hash() == Some(self.head.target.0) {
                    self.committed = true;
                }
                None
            }
            _ => None,
        };
        if entry.is_some() {
            self.entries += 1;
        }
        Ok(entry)
    }
}
