//! The undo journal's on-disk format, in the stream's framing.
//!
//! ```text
//! "LVMSJRNL" + version u16 (3)
//! J head     generation u32, nonce u64, dest path, size before, device size, base fp, target fp,
//!            created, source; zero-padded to the next 4 KiB boundary (the head block)
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
//!
//! **Nonce and generations.** A journal file is reused by later applies (see
//! [`super::undo`]), so the bytes after its valid prefix may be frames of an earlier apply.
//! Every frame after the head therefore carries its file's identity in its checksum: the
//! head stores a random 64-bit *nonce*, drawn when the file is started empty and kept while
//! it is reused, and a *generation*, counted up per reuse; a frame's CRC is
//! `crc32c(nonce u64 LE ‖ generation u32 LE ‖ tag ‖ len ‖ payload)` (neither is stored in
//! the frame). Within one file two generations differ only within 4 bytes, a burst of at most
//! 32 bits, which CRC-32C always detects: a frame of an earlier apply of the same file never
//! reads as valid. A frame of another journal file (a copied or recycled file, whatever its
//! generation) differs in the nonce too: it reads as valid only if its CRC happens to match,
//! a chance of 2^-32 for a frame that also sits exactly at a frame boundary.
//! Version 2 journals (generation, no nonce: `crc32c(generation ‖ frame)`) and version 1
//! journals (no generation, plain CRC, frames right after the head) are still read, so a
//! journal left by an older lvmsync is recovered; they are never reused (emptied first).

use crate::stream::frame::{
    encode_seeded_frame, put_string, read_seeded_frame, Cursor, Frame, FrameError, FRAME_CRC_LEN,
    FRAME_HEAD_LEN,
};
use crate::stream::record::Checkpoint;
use crate::stream::Fingerprint;
use std::io::Read;

/// First eight bytes of a journal.
pub const JOURNAL_MAGIC: [u8; 8] = *b"LVMSJRNL";
/// Journal format version written.
pub const JOURNAL_VERSION: u16 = 3;
/// The version before the nonce (still read: a journal left by an older lvmsync).
const JOURNAL_VERSION_2: u16 = 2;
/// The version before generations (still read).
const JOURNAL_VERSION_1: u16 = 1;
/// A version-2 or -3 head block is padded to a multiple of this; entries start after it, so the
/// head is written once per apply and never rewritten while entries are appended.
pub const HEAD_BLOCK: usize = 4096;

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

/// Which journal file and which apply of it: what every frame's CRC is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalId {
    /// Random, drawn when the file is started empty; `None` in a version 2 journal.
    pub nonce: Option<u64>,
    /// Counted up each time the file is reused.
    pub generation: u32,
}

impl JournalId {
    /// The CRC seed of this journal's frames: the CRC of the nonce's 8 bytes (if any) and
    /// the generation's 4, so a frame's CRC is `crc32c_append(seed, frame)` =
    /// `crc32c(nonce ‖ generation ‖ frame)`. Version 1 journals use seed 0 (a plain CRC).
    pub fn crc_seed(&self) -> u32 {
        let mut b = self.nonce.map_or(Vec::new(), |n| n.to_le_bytes().to_vec());
        b.extend_from_slice(&self.generation.to_le_bytes());
        crc32c::crc32c(&b)
    }
}

/// Read one frame into `frame`, checking its CRC from `seed`; `Ok(false)` at the end of the
/// valid prefix (end of input, a torn or foreign frame, zero padding).
fn read_frame(input: &mut impl Read, seed: u32, frame: &mut Frame) -> std::io::Result<bool> {
    match read_seeded_frame(input, seed, frame) {
        Ok(()) => Ok(true),
        Err(FrameError::Io(e)) => Err(e),
        Err(
            FrameError::Eof | FrameError::Truncated | FrameError::TooLong(_) | FrameError::BadCrc,
        ) => Ok(false),
    }
}

/// The head block of journal `nonce`, generation `generation`: preamble + head frame,
/// zero-padded to a multiple of [`HEAD_BLOCK`].
pub fn encode_head(h: &JournalHead, nonce: u64, generation: u32) -> Vec<u8> {
    let mut p = generation.to_le_bytes().to_vec();
    p.extend_from_slice(&nonce.to_le_bytes());
    put_string(&mut p, &h.dest);
    p.extend_from_slice(&h.size_before.to_le_bytes());
    p.extend_from_slice(&h.device_size.to_le_bytes());
    p.extend_from_slice(&h.base.0);
    p.extend_from_slice(&h.target.0);
    p.extend_from_slice(&h.created_unix.to_le_bytes());
    put_string(&mut p, &h.source);
    let mut out = JOURNAL_MAGIC.to_vec();
    out.extend_from_slice(&JOURNAL_VERSION.to_le_bytes());
    encode_seeded_frame(0, TAG_HEAD, &p, &mut out);
    out.resize(out.len().div_ceil(HEAD_BLOCK) * HEAD_BLOCK, 0);
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
pub fn finish_old_data_frame(seed: u32, offset: u64, frame: &mut [u8]) {
    let payload = frame.len() - FRAME_HEAD_LEN - FRAME_CRC_LEN;
    let len = u32::try_from(payload).expect("old data pieces are at most 1 MiB");
    frame[0] = TAG_OLD_DATA;
    frame[1..FRAME_HEAD_LEN].copy_from_slice(&len.to_le_bytes());
    frame[FRAME_HEAD_LEN..OLD_DATA_LEAD].copy_from_slice(&offset.to_le_bytes());
    let body = frame.len() - FRAME_CRC_LEN;
    let crc = crc32c::crc32c_append(seed, &frame[..body]);
    frame[body..].copy_from_slice(&crc.to_le_bytes());
}

/// Append an "old zeroes" entry's frame.
pub fn encode_old_zero(seed: u32, offset: u64, len: u64, out: &mut Vec<u8>) {
    let range = crate::stream::record::encode_range(offset, len);
    encode_seeded_frame(seed, TAG_OLD_ZERO, &range, out);
}

/// Append a progress frame: checkpoint `cp` is durable.
pub fn encode_progress(seed: u32, cp: &Checkpoint, out: &mut Vec<u8>) {
    encode_seeded_frame(seed, TAG_PROGRESS, &cp.encode(), out);
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
pub fn encode_commit(seed: u32, entries: u64, target: Fingerprint, out: &mut Vec<u8>) {
    let mut p = entries.to_le_bytes().to_vec();
    p.extend_from_slice(&target.0);
    encode_seeded_frame(seed, TAG_COMMIT, &p, out);
}

/// Reads a journal: the head, then entries up to the first bad frame or the commit.
pub struct JournalReader<R: Read> {
    input: R,
    frame: Frame,
    /// The decoded head.
    pub head: JournalHead,
    /// The journal's nonce and generation (`None`: a version 1 journal, which has neither).
    pub id: Option<JournalId>,
    /// Set once the commit frame has been read and matched.
    pub committed: bool,
    /// The newest valid progress frame read so far.
    pub progress: Option<Progress>,
    /// Byte offset just past the last valid frame read.
    pub pos: u64,
    seed: u32,
    entries: u64,
    ended: bool,
}

impl<R: Read> JournalReader<R> {
    /// Read the preamble and head; `None` if they are missing or torn (so nothing was
    /// written to the destination under this journal).
    pub fn open(mut input: R) -> std::io::Result<Option<Self>> {
        let mut pre = [0u8; 10];
        if input.read_exact(&mut pre).is_err() || pre[..8] != JOURNAL_MAGIC {
            return Ok(None);
        }
        let version = u16::from_le_bytes([pre[8], pre[9]]);
        if ![JOURNAL_VERSION, JOURNAL_VERSION_2, JOURNAL_VERSION_1].contains(&version) {
            return Ok(None);
        }
        let mut frame = Frame::default();
        if !read_frame(&mut input, 0, &mut frame)? || frame.tag != TAG_HEAD {
            return Ok(None);
        }
        let mut c = Cursor::new(frame.payload());
        let id = match version {
            JOURNAL_VERSION_1 => None,
            v => {
                let generation = c.u32();
                let nonce = match v {
                    JOURNAL_VERSION_2 => Some(None),
                    _ => c.u64().map(Some),
                };
                let (Some(generation), Some(nonce)) = (generation, nonce) else {
                    return Ok(None);
                };
                Some(JournalId { nonce, generation })
            }
        };
        let head = (|| {
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
        let Some(head) = head else {
            return Ok(None);
        };
        let mut pos = (pre.len() + frame.raw.len()) as u64;
        let mut ended = false;
        if id.is_some() {
            // Entries start after the zero-padded head block.
            let pad = pos.next_multiple_of(HEAD_BLOCK as u64) - pos;
            let skipped = std::io::copy(&mut (&mut input).take(pad), &mut std::io::sink())?;
            ended = skipped < pad;
            pos += pad;
        }
        Ok(Some(JournalReader {
            input,
            frame,
            head,
            id,
            committed: false,
            progress: None,
            pos,
            seed: id.map_or(0, |id| id.crc_seed()),
            entries: 0,
            ended,
        }))
    }

    /// The CRC seed this journal's frames use (for appending to it).
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// The next valid entry, or `None` at the end of the valid prefix or at the commit.
    pub fn next_entry(&mut self) -> std::io::Result<Option<UndoEntry>> {
        loop {
            if self.committed || self.ended {
                return Ok(None);
            }
            if !read_frame(&mut self.input, self.seed, &mut self.frame)? {
                self.ended = true;
                return Ok(None);
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
                    continue;
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
            match entry {
                Some(e) => {
                    self.entries += 1;
                    return Ok(Some(e));
                }
                None => {
                    self.ended = true;
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> JournalHead {
        JournalHead {
            dest: "/dev/x".into(),
            size_before: 1 << 20,
            device_size: 1 << 20,
            base: Fingerprint([1; 32]),
            target: Fingerprint([2; 32]),
            created_unix: 7,
            source: "s".into(),
        }
    }

    const NONCE: u64 = 0x5eed_1234_abcd_0042;

    fn seed(nonce: u64, generation: u32) -> u32 {
        let nonce = Some(nonce);
        JournalId { nonce, generation }.crc_seed()
    }

    /// A journal `nonce`, generation `g` holding `n` zero entries (optionally committed).
    fn journal(nonce: u64, g: u32, n: u64, commit: bool) -> Vec<u8> {
        let mut j = encode_head(&head(), nonce, g);
        for i in 0..n {
            encode_old_zero(seed(nonce, g), i << 20, 4096, &mut j);
        }
        if commit {
            encode_commit(seed(nonce, g), n, Fingerprint([2; 32]), &mut j);
        }
        j
    }

    /// `new` written over the start of `old`, as when a file is reused.
    fn overlay(old: &[u8], new: &[u8]) -> Vec<u8> {
        let mut reused = old.to_vec();
        reused[..new.len()].copy_from_slice(new);
        reused
    }

    fn read_all(bytes: &[u8]) -> (u64, bool) {
        let mut r = JournalReader::open(bytes).unwrap().unwrap();
        let mut n = 0;
        while r.next_entry().unwrap().is_some() {
            n += 1;
        }
        (n, r.committed)
    }

    #[test]
    fn frames_of_another_generation_end_the_valid_prefix() {
        // Generation 5's head and two entries over the tail of a committed generation-4
        // journal with the same layout: the stale frames sit exactly where generation 5's
        // next frames would, and none of them reads as valid.
        let old = journal(NONCE, 4, 6, true);
        assert_eq!(read_all(&old), (6, true));
        assert_eq!(
            read_all(&overlay(&old, &journal(NONCE, 5, 2, false))),
            (2, false)
        );
        // Whatever the two generations: a burst within 4 bytes never passes CRC-32C.
        let frame = |g: u32| {
            let mut f = Vec::new();
            encode_old_zero(seed(NONCE, g), 1 << 20, 4096, &mut f);
            f
        };
        for (a, b) in [(1, 2), (1, u32::MAX), (0x1234_5678, 0x1234_5679), (7, 0)] {
            let mut input = &frame(a)[..];
            assert!(!read_frame(&mut input, seed(NONCE, b), &mut Frame::default()).unwrap());
        }
    }

    #[test]
    fn frames_of_another_journal_file_end_the_valid_prefix() {
        // Two files started empty each begin at generation 1: only the nonce tells them
        // apart. A journal of another file (a copied or recycled one) under this one's head
        // and two entries: its frames sit exactly where this journal's next would.
        let other = journal(NONCE ^ 1 << 40, 1, 6, true);
        assert_eq!(read_all(&other), (6, true));
        assert_eq!(
            read_all(&overlay(&other, &journal(NONCE, 1, 2, false))),
            (2, false)
        );
        let fresh = journal(NONCE, 1, 0, false);
        let id = JournalReader::open(&fresh[..]).unwrap().unwrap().id;
        let nonce = Some(NONCE);
        assert_eq!(
            id,
            Some(JournalId {
                nonce,
                generation: 1
            })
        );
    }

    #[test]
    fn version_2_journals_are_still_read() {
        // Version 2: the head frame without a nonce, frames seeded by the generation alone.
        let mut j = encode_head(&head(), NONCE, 9);
        j[8] = 2;
        let mut h = Frame::default();
        read_seeded_frame(&mut &j[10..], 0, &mut h).unwrap();
        let mut p = h.payload().to_vec();
        p.drain(4..12);
        j.truncate(10);
        encode_seeded_frame(0, TAG_HEAD, &p, &mut j);
        j.resize(HEAD_BLOCK, 0);
        let v2 = JournalId {
            nonce: None,
            generation: 9,
        };
        assert_eq!(v2.crc_seed(), crc32c::crc32c(&9u32.to_le_bytes()));
        encode_old_zero(v2.crc_seed(), 0, 4096, &mut j);
        encode_commit(v2.crc_seed(), 1, Fingerprint([2; 32]), &mut j);
        let r = JournalReader::open(&j[..]).unwrap().unwrap();
        assert_eq!((r.head.clone(), r.id), (head(), Some(v2)));
        assert_eq!(read_all(&j), (1, true));
    }

    #[test]
    fn version_1_journals_are_still_read() {
        // A version 1 journal: plain CRCs, entries right after the head, no generation.
        let mut p = Vec::new();
        put_string(&mut p, "/dev/x");
        for v in [1u64 << 20, 1 << 20] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(&[1; 32]);
        p.extend_from_slice(&[2; 32]);
        p.extend_from_slice(&7u64.to_le_bytes());
        put_string(&mut p, "s");
        let mut j = JOURNAL_MAGIC.to_vec();
        j.extend_from_slice(&1u16.to_le_bytes());
        encode_seeded_frame(0, TAG_HEAD, &p, &mut j);
        encode_old_zero(0, 0, 4096, &mut j);
        encode_commit(0, 1, Fingerprint([2; 32]), &mut j);
        let r = JournalReader::open(&j[..]).unwrap().unwrap();
        assert_eq!((r.head.clone(), r.id), (head(), None));
        assert_eq!(read_all(&j), (1, true));
    }
}
