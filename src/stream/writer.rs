//! Serialising records into a stream: preamble, header, records, checkpoints, trailer.
//!
//! The writer enforces what the reader will check (extents in increasing, non-overlapping
//! order inside the device), so a bug upstream fails here, loudly, instead of producing a
//! stream every receiver refuses.

use super::frame::{encode_frame, encode_frame_with, FRAME_CRC_LEN, FRAME_HEAD_LEN};
use super::header::Header;
use super::record::{
    absorb_frame, encode_range, Checkpoint, DataRecord, Totals, DATA_FIXED_LEN, TAG_CHECKPOINT,
    TAG_DATA, TAG_DISCARD, TAG_HEADER, TAG_RESUME, TAG_TRAILER, TAG_ZERO,
};
use super::{MAGIC, VERSION};
use crate::error::{Error, Result};
use std::io::Write;

/// Emit a checkpoint after this many stream bytes.
pub const CHECKPOINT_EVERY: u64 = 64 << 20;

/// Writes one delta stream to `W`.
pub struct StreamWriter<W: Write> {
    out: W,
    name: String,
    hasher: blake3::Hasher,
    totals: Totals,
    device_size: u64,
    next_offset: u64,
    since_checkpoint: u64,
    checkpoint_every: u64,
    buf: Vec<u8>,
}

impl<W: Write> StreamWriter<W> {
    /// Start a stream: write the preamble and the header. `name` labels errors.
    pub fn new(out: W, name: &str, header: &Header) -> Result<Self> {
        let mut w = StreamWriter {
            out,
            name: name.to_string(),
            hasher: blake3::Hasher::new(),
            totals: Totals::default(),
            device_size: header.device_size.0,
            next_offset: 0,
            since_checkpoint: 0,
            checkpoint_every: CHECKPOINT_EVERY,
            buf: Vec::new(),
        };
        let mut pre = MAGIC.to_vec();
        pre.extend_from_slice(&VERSION.to_le_bytes());
        w.hasher.update(&pre);
        w.put_raw(&pre)?;
        w.emit(TAG_HEADER, &header.encode())?;
        Ok(w)
    }

    /// Emit checkpoints every `bytes` of stream instead of [`CHECKPOINT_EVERY`].
    pub fn set_checkpoint_every(&mut self, bytes: u64) {
        self.checkpoint_every = bytes.max(1);
    }

    /// Make this a continuation of an interrupted stream: write the resume marker carrying
    /// that stream's checkpoint `cp`; records continue from `cp.resume_offset`. Call right
    /// after [`StreamWriter::new`].
    pub fn resume_from(&mut self, cp: &Checkpoint) -> Result<()> {
        self.emit(TAG_RESUME, &cp.encode())?;
        self.next_offset = cp.resume_offset;
        self.totals.touched_bytes = cp.totals.touched_bytes;
        Ok(())
    }

    fn put_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.totals.stream_bytes += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.name, e))
    }

    fn emit(&mut self, tag: u8, payload: &[u8]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_frame(tag, payload, &mut buf);
        self.put_frame(tag, buf)
    }

    /// Hash (for the root), count and write one encoded frame held in `buf` (kept for reuse).
    fn put_frame(&mut self, tag: u8, buf: Vec<u8>) -> Result<()> {
        absorb_frame(&mut self.hasher, tag, &buf);
        let r = self.put_raw(&buf);
        self.since_checkpoint += buf.len() as u64;
        self.buf = buf;
        self.totals.records += 1;
        r
    }

    fn claim(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = offset.checked_add(len).filter(|&e| e <= self.device_size);
        match end {
            Some(end) if offset >= self.next_offset && len > 0 => {
                self.next_offset = end;
                self.totals.touched_bytes += len;
                Ok(())
            }
            _ => Err(Error::InvalidArgument(format!(
                "{}: extent {offset}+{len} is out of order, empty or past the device end {}",
                self.name, self.device_size
            ))),
        }
    }

    /// Append a data record (its payload already encoded and hashed). The payload is copied
    /// once, straight into the frame buffer.
    pub fn data(&mut self, rec: &DataRecord<'_>) -> Result<()> {
        self.claim(rec.offset, rec.plain_len as u64)?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(FRAME_HEAD_LEN + DATA_FIXED_LEN + rec.payload.len() + FRAME_CRC_LEN);
        encode_frame_with(0, TAG_DATA, &mut buf, |o| rec.encode_into(o));
        self.put_frame(TAG_DATA, buf)?;
        self.maybe_checkpoint()
    }

    /// Append a zero extent (the destination range must read as zeroes).
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        self.claim(offset, len)?;
        self.emit(TAG_ZERO, &encode_range(offset, len))?;
        self.maybe_checkpoint()
    }

    /// Append a discard extent (unmapped at the source; reads as zeroes at the destination).
    pub fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.claim(offset, len)?;
        self.emit(TAG_DISCARD, &encode_range(offset, len))?;
        self.maybe_checkpoint()
    }

    fn maybe_checkpoint(&mut self) -> Result<()> {
        if self.since_checkpoint < self.checkpoint_every {
            return Ok(());
        }
        let cp = Checkpoint {
            totals: Totals {
                root: *self.hasher.finalize().as_bytes(),
                ..self.totals
            },
            resume_offset: self.next_offset,
        };
        self.emit(TAG_CHECKPOINT, &cp.encode())?;
        tracing::debug!(
            resume_offset = cp.resume_offset,
            records = cp.totals.records,
            stream_bytes = cp.totals.stream_bytes,
            "checkpoint written: resume offset {}",
            cp.resume_offset
        );
        self.since_checkpoint = 0;
        Ok(())
    }

    /// Write the trailer and flush; returns the sink and the final totals.
    pub fn finish(mut self) -> Result<(W, Totals)> {
        let totals = Totals {
            root: *self.hasher.finalize().as_bytes(),
            ..self.totals
        };
        let mut payload = Vec::with_capacity(56);
        totals.encode_into(&mut payload);
        let mut frame = Vec::with_capacity(72);
        encode_frame(TAG_TRAILER, &payload, &mut frame);
        self.out
            .write_all(&frame)
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::io(&self.name, e))?;
        Ok((self.out, totals))
    }
}
