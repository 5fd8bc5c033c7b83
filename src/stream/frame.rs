//! Framing shared by the delta stream and the undo journal.
//!
//! Every structure after the 10-byte preamble is a *frame*: `tag: u8`, `len: u32 LE`,
//! `payload[len]`, `crc32c(tag ‖ len ‖ payload): u32 LE`. The length is checked against
//! [`MAX_FRAME_PAYLOAD`] before anything is allocated, and the CRC catches any flipped byte
//! in the frame, so the payload decoders only ever see bytes that arrived as written.

use std::io::{self, Read};

/// Largest plain (uncompressed) extent a data record may carry: 4 MiB.
pub const MAX_PLAIN_LEN: u32 = 4 << 20;

/// Largest frame payload any reader accepts: a data record's fixed fields plus a raw
/// [`MAX_PLAIN_LEN`] extent, with room for zstd's worst-case expansion.
pub const MAX_FRAME_PAYLOAD: u32 = MAX_PLAIN_LEN + (64 << 10);

/// Size of a frame's head (`tag` + `len`).
pub const FRAME_HEAD_LEN: usize = 5;

/// Size of a frame's trailing CRC.
pub const FRAME_CRC_LEN: usize = 4;

/// Append one frame carrying `payload` under `tag` to `out`.
pub fn encode_frame(tag: u8, payload: &[u8], out: &mut Vec<u8>) {
    encode_seeded_frame(0, tag, payload, out);
}

/// Append one frame whose CRC continues from `seed` instead of 0. With `seed` the CRC of a
/// few bytes, the frame's CRC is that of those bytes followed by the frame: the undo journal
/// binds its generation into every frame this way (`src/journal/format.rs`).
pub fn encode_seeded_frame(seed: u32, tag: u8, payload: &[u8], out: &mut Vec<u8>) {
    encode_frame_with(seed, tag, out, |o| o.extend_from_slice(payload));
}

/// Append one frame (CRC from `seed`, see [`encode_seeded_frame`]) whose payload `fill`
/// appends to `out`: a record's fields and bytes go straight into the frame, with no
/// payload buffer in between.
pub fn encode_frame_with(seed: u32, tag: u8, out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&[0; 4]);
    fill(out);
    let len = out.len() - start - FRAME_HEAD_LEN;
    let len = u32::try_from(len).expect("frame payloads are bounded by the encoders");
    debug_assert!(len <= MAX_FRAME_PAYLOAD);
    out[start + 1..start + FRAME_HEAD_LEN].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(seed, &out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The input ended cleanly before a new frame started.
    Eof,
    /// The input ended inside a frame.
    Truncated,
    /// The length field exceeds [`MAX_FRAME_PAYLOAD`].
    TooLong(u32),
    /// The CRC does not match the bytes.
    BadCrc,
    /// The underlying reader failed.
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Eof => f.write_str("end of input"),
            FrameError::Truncated => f.write_str("input ends inside a frame (truncated)"),
            FrameError::TooLong(n) => {
                write!(f, "frame length {n} exceeds the limit {MAX_FRAME_PAYLOAD}")
            }
            FrameError::BadCrc => f.write_str("frame checksum mismatch (corrupted bytes)"),
            FrameError::Io(e) => write!(f, "read failed: {e}"),
        }
    }
}

/// A frame read back: its tag and the whole frame's bytes (head, payload, CRC).
#[derive(Debug, Default)]
pub struct Frame {
    /// The frame's tag byte.
    pub tag: u8,
    /// Head + payload + CRC, exactly as read (so callers can hash what they received).
    pub raw: Vec<u8>,
}

impl Frame {
    /// The payload between head and CRC.
    pub fn payload(&self) -> &[u8] {
        &self.raw[FRAME_HEAD_LEN..self.raw.len() - FRAME_CRC_LEN]
    }
}

/// Fill `buf` completely, telling a clean EOF (nothing read) from a short read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(true)
}

/// Read the next frame into `frame`, reusing its buffer.
pub fn read_frame(r: &mut impl Read, frame: &mut Frame) -> Result<(), FrameError> {
    read_seeded_frame(r, 0, frame)
}

/// Read the next frame into `frame`, checking its CRC from `seed` (see
/// [`encode_seeded_frame`]).
pub fn read_seeded_frame(
    r: &mut impl Read,
    seed: u32,
    frame: &mut Frame,
) -> Result<(), FrameError> {
    let mut head = [0u8; FRAME_HEAD_LEN];
    if !read_full(r, &mut head)? {
        return Err(FrameError::Eof);
    }
    let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
    if len > MAX_FRAME_PAYLOAD {
        return Err(FrameError::TooLong(len));
    }
    let total = FRAME_HEAD_LEN + len as usize + FRAME_CRC_LEN;
    frame.tag = head[0];
    frame.raw.clear();
    frame.raw.resize(total, 0);
    frame.raw[..FRAME_HEAD_LEN].copy_from_slice(&head);
    if !read_full(r, &mut frame.raw[FRAME_HEAD_LEN..])? {
        return Err(FrameError::Truncated);
    }
    let body = total - FRAME_CRC_LEN;
    let want = u32::from_le_bytes(frame.raw[body..].try_into().expect("4 bytes"));
    if crc32c::crc32c_append(seed, &frame.raw[..body]) != want {
        return Err(FrameError::BadCrc);
    }
    Ok(())
}

/// A bounds-checked little-endian cursor over a frame payload.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// The next `n` bytes, or `None` if fewer remain.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .map(|b| u16::from_le_bytes(b.try_into().expect("2")))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
    }

    /// 32 raw bytes (a hash or fingerprint).
    pub fn hash(&mut self) -> Option<[u8; 32]> {
        self.take(32).map(|b| b.try_into().expect("32"))
    }

    /// A u16-length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Option<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// True when every byte has been read.
    pub fn is_done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// Append a u16-length-prefixed string, cut to 65535 bytes at a character boundary.
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_every_flip_detected() {
        let mut buf = Vec::new();
        encode_frame(b'Q', b"hello frame", &mut buf);
        let mut f = Frame::default();
        read_frame(&mut &buf[..], &mut f).unwrap();
        assert_eq!((f.tag, f.payload()), (b'Q', &b"hello frame"[..]));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                read_frame(&mut &bad[..], &mut f).is_err(),
                "flip at {i} undetected"
            );
        }
        for cut in 1..buf.len() {
            assert!(matches!(
                read_frame(&mut &buf[..cut], &mut f),
                Err(FrameError::Truncated)
            ));
        }
    }

    #[test]
    fn oversized_length_refused_before_allocation() {
        let mut buf = vec![b'D'];
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut f = Frame::default();
        assert!(matches!(
            read_frame(&mut &buf[..], &mut f),
            Err(FrameError::TooLong(_))
        ));
        assert!(f.raw.capacity() < 1024);
    }
}
