//! Record payloads: data, zero and discard extents, checkpoints and the trailer.
//!
//! Decoding is pure over a frame payload and checks every field it can check alone;
//! ordering, device bounds and the data hash are checked by the reader, which has the
//! context (previous extent, header, decompressed bytes).

use super::frame::{Cursor, FRAME_CRC_LEN, FRAME_HEAD_LEN, MAX_PLAIN_LEN};

/// Frame tag of the header.
pub const TAG_HEADER: u8 = b'H';
/// Frame tag of a data extent.
pub const TAG_DATA: u8 = b'D';
/// Frame tag of a zero extent (the range reads as zeroes afterwards).
pub const TAG_ZERO: u8 = b'Z';
/// Frame tag of a discard extent (unmapped at the source; reads as zeroes afterwards).
pub const TAG_DISCARD: u8 = b'X';
/// Frame tag of a checkpoint (resume point).
pub const TAG_CHECKPOINT: u8 = b'C';
/// Frame tag of the trailer, always the last frame.
pub const TAG_TRAILER: u8 = b'T';
/// Frame tag of a resume marker: only directly after the header of a continuation stream,
/// carrying the checkpoint of the interrupted stream it continues.
pub const TAG_RESUME: u8 = b'R';

/// How a data record's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The plain bytes.
    None = 0,
    /// One zstd frame.
    Zstd = 1,
}

/// Fixed-size part of a data record payload before the (compressed) bytes.
pub const DATA_FIXED_LEN: usize = 8 + 4 + 1 + 32;

/// A data record as it sits in the stream (still compressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRecord<'a> {
    /// Destination byte offset.
    pub offset: u64,
    /// Length of the plain bytes (≤ [`MAX_PLAIN_LEN`]).
    pub plain_len: u32,
    /// Encoding of `payload`.
    pub compression: Compression,
    /// blake3 of the plain bytes.
    pub hash: [u8; 32],
    /// The encoded bytes.
    pub payload: &'a [u8],
}

impl DataRecord<'_> {
    /// Append this record's frame payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.plain_len.to_le_bytes());
        out.push(self.compression as u8);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(self.payload);
    }

    /// Decode a data record payload.
    pub fn decode(payload: &[u8]) -> Result<DataRecord<'_>, String> {
        let mut c = Cursor::new(payload);
        let short = || "data record is too short".to_string();
        let offset = c.u64().ok_or_else(short)?;
        let plain_len = c.u32().ok_or_else(short)?;
        let compression = match c.u8().ok_or_else(short)? {
            0 => Compression::None,
            1 => Compression::Zstd,
            n => return Err(format!("unknown compression {n}")),
        };
        let hash = c.hash().ok_or_else(short)?;
        let payload = c.rest();
        if plain_len == 0 || plain_len > MAX_PLAIN_LEN {
            return Err(format!(
                "data record length {plain_len} is outside 1..={MAX_PLAIN_LEN}"
            ));
        }
        if compression == Compression::None && payload.len() != plain_len as usize {
            return Err(format!(
                "raw data record carries {} bytes but declares {plain_len}",
                payload.len()
            ));
        }
        Ok(DataRecord {
            offset,
            plain_len,
            compression,
            hash,
            payload,
        })
    }
}

/// Feed what of one frame the root hash covers into `root` (stream format version 2): a data
/// record's frame without its payload (head, the fixed fields carrying the blake3 of the plain
/// bytes, and the frame's CRC), every other frame whole. The reader checks each data payload
/// against that blake3 (and the frame against its CRC), so the payload bytes need not be
/// hashed a second time; the CRC binds their encoding into the root as well.
pub fn absorb_frame(root: &mut blake3::Hasher, tag: u8, frame: &[u8]) {
    let fixed_end = FRAME_HEAD_LEN + DATA_FIXED_LEN;
    if tag == TAG_DATA && frame.len() >= fixed_end + FRAME_CRC_LEN {
        root.update(&frame[..fixed_end]);
        root.update(&frame[frame.len() - FRAME_CRC_LEN..]);
    } else {
        root.update(frame);
    }
}

/// A zero or discard extent: `(offset, length)`.
pub fn encode_range(offset: u64, len: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&offset.to_le_bytes());
    out[8..].copy_from_slice(&len.to_le_bytes());
    out
}

/// Decode a zero/discard payload.
pub fn decode_range(payload: &[u8]) -> Result<(u64, u64), String> {
    let mut c = Cursor::new(payload);
    let (Some(off), Some(len), true) = (c.u64(), c.u64(), payload.len() == 16) else {
        return Err(format!(
            "extent record has {} bytes, expected 16",
            payload.len()
        ));
    };
    if len == 0 {
        return Err("extent record of length 0".into());
    }
    Ok((off, len))
}

/// Running totals, as carried by checkpoints and the trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Frames so far, header included, this one excluded.
    pub records: u64,
    /// Stream bytes so far (preamble and all earlier frames).
    pub stream_bytes: u64,
    /// Destination bytes covered by data, zero and discard records so far.
    pub touched_bytes: u64,
    /// The root hash so far (in the trailer: of the whole stream): blake3 over the preamble and
    /// what [`absorb_frame`] takes of each frame (version 1: over all stream bytes).
    pub root: [u8; 32],
}

/// A checkpoint: totals plus the device offset below which every extent has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Totals up to this checkpoint.
    pub totals: Totals,
    /// Every extent ending at or before this offset precedes the checkpoint.
    pub resume_offset: u64,
}

impl Totals {
    /// Encode as 56 bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.records.to_le_bytes());
        out.extend_from_slice(&self.stream_bytes.to_le_bytes());
        out.extend_from_slice(&self.touched_bytes.to_le_bytes());
        out.extend_from_slice(&self.root);
    }

    fn decode(c: &mut Cursor<'_>) -> Option<Totals> {
        Some(Totals {
            records: c.u64()?,
            stream_bytes: c.u64()?,
            touched_bytes: c.u64()?,
            root: c.hash()?,
        })
    }

    /// Decode a trailer payload.
    pub fn decode_trailer(payload: &[u8]) -> Result<Totals, String> {
        let mut c = Cursor::new(payload);
        match Totals::decode(&mut c) {
            Some(t) if c.is_done() => Ok(t),
            _ => Err(format!("trailer has {} bytes, expected 56", payload.len())),
        }
    }
}

impl Checkpoint {
    /// Encode as 64 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.totals.encode_into(&mut out);
        out.extend_from_slice(&self.resume_offset.to_le_bytes());
        out
    }

    /// Decode a checkpoint payload.
    pub fn decode(payload: &[u8]) -> Result<Checkpoint, String> {
        let mut c = Cursor::new(payload);
        match (Totals::decode(&mut c), c.u64()) {
            (Some(totals), Some(resume_offset)) if c.is_done() => Ok(Checkpoint {
                totals,
                resume_offset,
            }),
            _ => Err(format!(
                "checkpoint has {} bytes, expected 64",
                payload.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let d = DataRecord {
            offset: 4096,
            plain_len: 3,
            compression: Compression::None,
            hash: [1; 32],
            payload: b"abc",
        };
        let mut buf = Vec::new();
        d.encode_into(&mut buf);
        assert_eq!(DataRecord::decode(&buf).unwrap(), d);
        buf.pop();
        assert!(DataRecord::decode(&buf).is_err());
        assert_eq!(decode_range(&encode_range(5, 6)).unwrap(), (5, 6));
        assert!(decode_range(&encode_range(5, 0)).is_err());
        let cp = Checkpoint {
            totals: Totals {
                records: 1,
                stream_bytes: 2,
                touched_bytes: 3,
                root: [4; 32],
            },
            resume_offset: 5,
        };
        assert_eq!(Checkpoint::decode(&cp.encode()).unwrap(), cp);
    }
}
