//! Reading and verifying a stream, record by record.
//!
//! The reader is pure over any `Read` (no device I/O), so it is fuzzed directly. It hands
//! out a data extent only after its frame CRC, its bounds and order, its length and the
//! blake3 of its decompressed bytes all check; the stream as a whole is accepted only when
//! the trailer's counts and root hash match what was read and nothing follows it. It reads
//! format versions 1 (root over every byte) and 2 (root over frames, data payloads excluded).

use super::frame::{read_frame, Frame, FrameError, FRAME_CRC_LEN, FRAME_HEAD_LEN};
use super::header::Header;
use super::record::{
    absorb_frame, decode_range, Checkpoint, Compression, DataRecord, Totals, TAG_CHECKPOINT,
    TAG_DATA, TAG_DISCARD, TAG_HEADER, TAG_RESUME, TAG_TRAILER, TAG_ZERO,
};
use super::{MAGIC, OLDEST_READABLE_VERSION, VERSION};
use crate::error::{Error, Result};
use std::io::Read;

/// One verified record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Plain bytes to write at `offset`.
    Data {
        /// Destination byte offset.
        offset: u64,
        /// The verified plain bytes.
        data: Vec<u8>,
    },
    /// A range that must read as zeroes.
    Zero {
        /// Destination byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A range unmapped at the source; it must read as zeroes.
    Discard {
        /// Destination byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A verified resume point.
    Checkpoint(Checkpoint),
    /// This stream continues an interrupted one from that stream's checkpoint (only ever the
    /// first item). The receiver must hold exactly that checkpoint durably.
    Resume(Checkpoint),
}

/// A verifying stream reader.
pub struct StreamReader<R: Read> {
    input: R,
    name: String,
    header: Header,
    hasher: blake3::Hasher,
    /// A version-1 stream: its root hash covers every byte.
    v1_root: bool,
    totals: Totals,
    next_offset: u64,
    frame: Frame,
    done: bool,
    zstd: zstd::bulk::Decompressor<'static>,
}

impl<R: Read> StreamReader<R> {
    /// Read and check the preamble and header. `name` labels errors (a path or "stdin").
    pub fn open(mut input: R, name: &str) -> Result<Self> {
        let bad = |detail: String| Error::Integrity {
            stream: name.to_string(),
            detail,
        };
        let mut pre = [0u8; 10];
        let mut got = 0;
        while got < pre.len() {
            match input.read(&mut pre[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(name, e)),
            }
        }
        if got < 8 || pre[..8] != MAGIC {
            return Err(bad(
                "not an lvmsync delta stream (bad magic; empty or truncated input?)".into(),
            ));
        }
        if got < 10 {
            return Err(bad("stream ends inside its preamble (truncated)".into()));
        }
        let version = u16::from_le_bytes([pre[8], pre[9]]);
        if !(OLDEST_READABLE_VERSION..=VERSION).contains(&version) {
            return Err(bad(format!(
                "stream format version {version} is not supported (this lvmsync reads versions \
                 {OLDEST_READABLE_VERSION} to {VERSION}); use an lvmsync of the sender's \
                 release on the receiver"
            )));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&pre);
        let mut frame = Frame::default();
        read_frame(&mut input, &mut frame)
            .map_err(|e| bad(format!("header frame: {}", frame_detail(e))))?;
        if frame.tag != TAG_HEADER {
            return Err(bad(format!(
                "first frame has tag {:#04x}, not a header",
                frame.tag
            )));
        }
        let header = Header::decode(frame.payload()).map_err(|d| bad(format!("header: {d}")))?;
        hasher.update(&frame.raw);
        let totals = Totals {
            records: 1,
            stream_bytes: (pre.len() + frame.raw.len()) as u64,
            ..Totals::default()
        };
        Ok(StreamReader {
            input,
            name: name.to_string(),
            header,
            hasher,
            v1_root: version == 1,
            totals,
            next_offset: 0,
            frame,
            done: false,
            zstd: zstd::bulk::Decompressor::new().map_err(|e| Error::io(name, e))?,
        })
    }

    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Totals of everything read so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    fn bad(&self, detail: String) -> Error {
        Error::Integrity {
            stream: self.name.clone(),
            detail: format!(
                "{detail} (after record {}, stream byte {})",
                self.totals.records, self.totals.stream_bytes
            ),
        }
    }

    /// The next verified record, or `None` once the trailer has been verified.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        match read_frame(&mut self.input, &mut self.frame) {
            Ok(()) => {}
            Err(FrameError::Eof) => {
                return Err(self.bad("stream ends before its trailer (truncated)".into()))
            }
            Err(FrameError::Io(e)) => return Err(Error::io(&self.name, e)),
            Err(e) => return Err(self.bad(frame_detail(e))),
        }
        if self.frame.tag == TAG_TRAILER {
            self.finish_trailer()?;
            return Ok(None);
        }
        let item = self.decode_item()?;
        if self.v1_root {
            self.hasher.update(&self.frame.raw);
        } else {
            absorb_frame(&mut self.hasher, self.frame.tag, &self.frame.raw);
        }
        self.totals.records += 1;
        self.totals.stream_bytes += self.frame.raw.len() as u64;
        Ok(Some(item))
    }

    fn claim(&mut self, offset: u64, len: u64) -> Result<()> {
        let end = offset.checked_add(len);
        match end {
            Some(end) if offset >= self.next_offset && end <= self.header.device_size.0 => {
                self.next_offset = end;
                self.totals.touched_bytes += len;
                if self.totals.touched_bytes > self.header.touched_bytes.0 {
                    return Err(self.bad(format!(
                        "records touch more than the {} bytes the header declares",
                        self.header.touched_bytes
                    )));
                }
                Ok(())
            }
            _ => Err(self.bad(format!(
                "extent {offset}+{len} is out of order or past the device end {}",
                self.header.device_size
            ))),
        }
    }

    fn decode_item(&mut self) -> Result<Item> {
        let tag = self.frame.tag;
        let payload = &self.frame.raw[FRAME_HEAD_LEN..self.frame.raw.len() - FRAME_CRC_LEN];
        match tag {
            TAG_DATA => {
                let rec = DataRecord::decode(payload).map_err(|d| self.bad(d))?;
                let (offset, plain_len, hash) = (rec.offset, rec.plain_len as usize, rec.hash);
                let data = match rec.compression {
                    Compression::None => rec.payload.to_vec(),
                    Compression::Zstd => {
                        let mut out = Vec::with_capacity(plain_len);
                        self.zstd
                            .decompress_to_buffer(rec.payload, &mut out)
                            .map_err(|e| Error::Integrity {
                                stream: self.name.clone(),
                                detail: format!("zstd data at offset {offset} is bad: {e}"),
                            })?;
                        out
                    }
                };
                if data.len() != plain_len || *blake3::hash(&data).as_bytes() != hash {
                    return Err(self.bad(format!(
                        "data at offset {offset} does not match its blake3 hash"
                    )));
                }
                self.claim(offset, plain_len as u64)?;
                Ok(Item::Data { offset, data })
            }
            TAG_ZERO | TAG_DISCARD => {
                let (offset, len) = decode_range(payload).map_err(|d| self.bad(d))?;
                self.claim(offset, len)?;
                Ok(if tag == TAG_ZERO {
                    Item::Zero { offset, len }
                } else {
                    Item::Discard { offset, len }
                })
            }
            TAG_CHECKPOINT => {
                let cp = Checkpoint::decode(payload).map_err(|d| self.bad(d))?;
                let expect = Totals {
                    root: *self.hasher.finalize().as_bytes(),
                    ..self.totals
                };
                if cp.totals != expect || cp.resume_offset != self.next_offset {
                    return Err(self.bad("checkpoint does not match the stream before it".into()));
                }
                tracing::debug!(
                    resume_offset = cp.resume_offset,
                    records = cp.totals.records,
                    stream_bytes = cp.totals.stream_bytes,
                    "checkpoint verified: resume offset {}",
                    cp.resume_offset
                );
                Ok(Item::Checkpoint(cp))
            }
            TAG_RESUME if self.totals.records == 1 => {
                let cp = Checkpoint::decode(payload).map_err(|d| self.bad(d))?;
                if cp.resume_offset > self.header.device_size.0
                    || cp.totals.touched_bytes > self.header.touched_bytes.0
                {
                    return Err(self.bad("resume marker lies outside the stream".into()));
                }
                self.next_offset = cp.resume_offset;
                self.totals.touched_bytes = cp.totals.touched_bytes;
                Ok(Item::Resume(cp))
            }
            TAG_RESUME => Err(self.bad("a resume marker after the first record".into())),
            TAG_HEADER => Err(self.bad("a second header inside the stream".into())),
            t => Err(self.bad(format!("unknown record tag {t:#04x}"))),
        }
    }

    fn finish_trailer(&mut self) -> Result<()> {
        let payload = self.frame.payload();
        let t = Totals::decode_trailer(payload).map_err(|d| self.bad(d))?;
        let expect = Totals {
            root: *self.hasher.finalize().as_bytes(),
            ..self.totals
        };
        if t != expect {
            return Err(self.bad(format!(
                "trailer does not match the stream: it says {} records / {} bytes / root {}, \
                 the stream has {} / {} / {}",
                t.records,
                t.stream_bytes,
                hex(&t.root),
                expect.records,
                expect.stream_bytes,
                hex(&expect.root)
            )));
        }
        if t.touched_bytes != self.header.touched_bytes.0 {
            return Err(self.bad("records touch fewer bytes than the header declares".into()));
        }
        let mut extra = [0u8; 1];
        loop {
            match self.input.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => return Err(self.bad("bytes follow the trailer".into())),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.name, e)),
            }
        }
        self.done = true;
        Ok(())
    }
}

fn frame_detail(e: FrameError) -> String {
    match e {
        FrameError::Eof => "stream ends early (truncated)".into(),
        e => e.to_string(),
    }
}

fn hex(b: &[u8; 32]) -> String {
    super::header::Fingerprint(*b).to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::frame::{encode_frame, read_frame};
    use crate::stream::record::DATA_FIXED_LEN;
    use crate::stream::writer::StreamWriter;
    use crate::stream::Fingerprint;
    use crate::units::Bytes;

    const REC: usize = 8192;

    fn header() -> Header {
        Header {
            source: "t".into(),
            source_uuid: String::new(),
            device_size: Bytes(1 << 20),
            base_size: Bytes(0),
            block_size: Bytes(4096),
            base: Fingerprint::NONE,
            target: Fingerprint([7; 32]),
            created_unix: 1,
            touched_bytes: Bytes(2 * REC as u64),
        }
    }

    fn text(seed: u8, i: u64) -> Vec<u8> {
        (0..)
            .flat_map(|n: u64| format!("record {i} line {n} seed {seed}\n").into_bytes())
            .take(REC)
            .collect()
    }

    /// A version-2 stream of two zstd data records (compressible text at 0 and `REC`).
    fn stream(seed: u8) -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new(), "t", &header()).unwrap();
        for i in 0..2u64 {
            let plain = text(seed, i);
            let packed = zstd::bulk::compress(&plain, 1).unwrap();
            assert!(packed.len() < plain.len() / 2);
            w.data(&DataRecord {
                offset: i * REC as u64,
                plain_len: REC as u32,
                compression: Compression::Zstd,
                hash: *blake3::hash(&plain).as_bytes(),
                payload: &packed,
            })
            .unwrap();
        }
        w.finish().unwrap().0
    }

    /// Byte ranges of the frames after the preamble: header, records, trailer.
    fn frames(s: &[u8]) -> Vec<std::ops::Range<usize>> {
        let (mut at, mut out, mut f) = (10, Vec::new(), Frame::default());
        while at < s.len() {
            read_frame(&mut &s[at..], &mut f).unwrap();
            out.push(at..at + f.raw.len());
            at += f.raw.len();
        }
        out
    }

    /// `s` with frame `i` replaced by a well-formed frame (valid CRC) of `tag` and `payload`.
    fn with_frame(s: &[u8], i: usize, tag: u8, payload: &[u8]) -> Vec<u8> {
        let r = frames(s)[i].clone();
        let mut out = s[..r.start].to_vec();
        encode_frame(tag, payload, &mut out);
        out.extend_from_slice(&s[r.end..]);
        out
    }

    fn read_all(s: &[u8]) -> Result<Vec<Item>> {
        let mut r = StreamReader::open(s, "t")?;
        let mut items = Vec::new();
        while let Some(item) = r.next_item()? {
            items.push(item);
        }
        Ok(items)
    }

    fn payload(s: &[u8], i: usize) -> Vec<u8> {
        let r = frames(s)[i].clone();
        s[r.start + FRAME_HEAD_LEN..r.end - FRAME_CRC_LEN].to_vec()
    }

    #[test]
    fn every_flip_of_a_compressed_payload_is_refused_even_with_a_valid_crc() {
        let s = stream(1);
        assert_eq!(read_all(&s).unwrap().len(), 2);
        let good = payload(&s, 1);
        let mut decoded_anyway = 0;
        for pos in DATA_FIXED_LEN..good.len() {
            let mut bad = good.clone();
            bad[pos] ^= 0x04;
            let rec = DataRecord::decode(&bad).unwrap();
            decoded_anyway += usize::from(zstd::bulk::decompress(rec.payload, REC).is_ok());
            let tampered = with_frame(&s, 1, TAG_DATA, &bad);
            assert!(
                read_all(&tampered).is_err(),
                "flip at payload byte {pos} accepted"
            );
        }
        assert!(
            decoded_anyway > 0,
            "no flip decompressed: the case is not covered"
        );
    }

    #[test]
    fn a_payload_reencoded_to_the_same_plain_bytes_is_refused_by_the_root() {
        let s = stream(1);
        let rec_payload = payload(&s, 1);
        let rec = DataRecord::decode(&rec_payload).unwrap();
        let plain = text(1, 0);
        let raw = DataRecord {
            compression: Compression::None,
            payload: &plain,
            ..rec
        };
        let mut p = Vec::new();
        raw.encode_into(&mut p);
        let err = read_all(&with_frame(&s, 1, TAG_DATA, &p)).unwrap_err();
        assert!(err.to_string().contains("trailer does not match"), "{err}");
    }

    #[test]
    fn a_record_spliced_from_another_stream_is_refused_by_the_root() {
        let (a, b) = (stream(1), stream(2));
        let spliced = with_frame(&a, 2, TAG_DATA, &payload(&b, 2));
        let err = read_all(&spliced).unwrap_err();
        assert!(err.to_string().contains("trailer does not match"), "{err}");
    }

    /// Version 1 (root over every byte) still reads; a version-2 stream relabelled as
    /// version 1 does not.
    #[test]
    fn version_1_streams_are_read_with_their_own_root() {
        let s = stream(1);
        let mut v1 = s.clone();
        v1[8] = 1;
        let err = read_all(&v1).unwrap_err();
        assert!(err.to_string().contains("trailer does not match"), "{err}");
        let fr = frames(&v1);
        let trailer = fr.last().unwrap().clone();
        let mut t = Totals::decode_trailer(&payload(&v1, fr.len() - 1)).unwrap();
        t.root = *blake3::hash(&v1[..trailer.start]).as_bytes();
        let mut tp = Vec::new();
        t.encode_into(&mut tp);
        let v1 = with_frame(&v1, fr.len() - 1, TAG_TRAILER, &tp);
        assert_eq!(read_all(&v1).unwrap(), read_all(&s).unwrap());
    }
}
