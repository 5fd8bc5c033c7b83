//! The sender's pipeline: read changed extents, find zero runs, hash and compress them on
//! every core, and write records in order, with a fixed number of buffers in flight.
//!
//! Threads: one reader (`pread` of the source), `workers` encoders, and the caller's thread
//! writing the stream. A token channel holding `in_flight` tokens bounds the chunks that
//! exist at once, so memory is about `in_flight × 2 × chunk` whatever the device size.
//!
//! Small extents travel together: the reader packs up to [`PIECES_PER_JOB`] extents (at most
//! `chunk` bytes) into one job, so the thread hand-offs (two channel sends, a token and the
//! lock on the job queue) are paid per job, not per 4 KiB extent. A COW snapshot's changes
//! are mostly single 4 KiB chunks; one hand-off each cost more than their read (6 ms an
//! extent in the QEMU/TCG guest, docs/performance.md, "Versus the Ruby lvmsync and rsync").

use super::fingerprint::LeafHashes;
use super::header::Header;
use super::record::{Checkpoint, Compression, DataRecord, Totals};
use super::writer::StreamWriter;
use crate::changeset::{ChangeSet, ExtentKind};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Arc, Mutex};

/// Tuning of the send pipeline.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// zstd level (1 is fast and is the default).
    pub level: i32,
    /// Encoder threads.
    pub workers: usize,
    /// Chunks in flight (bounds memory).
    pub in_flight: usize,
    /// Bytes read per chunk (≤ [`super::frame::MAX_PLAIN_LEN`]).
    pub chunk: usize,
    /// Checkpoint interval in stream bytes (default [`super::writer::CHECKPOINT_EVERY`]).
    pub checkpoint_every: Option<u64>,
    /// Continue an interrupted stream from this checkpoint (its extents before
    /// `resume_offset` are not sent again; the changes must be those it was made from:
    /// [`rest_after`]).
    pub resume: Option<Checkpoint>,
    /// The source's leaf hashes from its fingerprint: a data run that is exactly one of these
    /// leaves takes its hash from here instead of hashing the bytes again. They must be the
    /// hashes of the source as read now (a source changed since gives records the receiver
    /// refuses: their bytes do not match their hash).
    pub leaves: LeafHashes,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            level: 1,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            in_flight: 8,
            chunk: 1 << 20,
            checkpoint_every: None,
            resume: None,
            leaves: LeafHashes::default(),
        }
    }
}

/// What a send produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendSummary {
    /// Data records written.
    pub data_records: u64,
    /// Plain bytes carried in data records.
    pub data_bytes: u64,
    /// Bytes of those stored zstd-compressed (plain size).
    pub compressed_plain_bytes: u64,
    /// Bytes covered by zero records (including all-zero data found while reading).
    pub zero_bytes: u64,
    /// Bytes covered by discard records.
    pub discard_bytes: u64,
    /// Final stream totals (records, stream bytes, root hash).
    pub totals: Totals,
}

/// Extents a job carries at most (each is still its own record or records).
const PIECES_PER_JOB: usize = 64;

enum Job {
    Discard(u64, u64),
    /// A range in a hole of a sparse source file: zeroes, not read.
    Hole(u64, u64),
    /// Source bytes of consecutive extents in one buffer: `(offset, length)` of each piece
    /// (the buffer may be longer than the pieces: a reused one).
    Data(Vec<(u64, usize)>, Vec<u8>),
}

/// The reader's job under construction: pieces read back to back into one buffer, whose
/// first `used` bytes they fill.
#[derive(Default)]
struct Pieces {
    pieces: Vec<(u64, usize)>,
    buf: Vec<u8>,
    used: usize,
}

enum Part {
    Zero(u64, u64),
    Discard(u64, u64),
    Data {
        offset: u64,
        plain_len: u32,
        compression: Compression,
        hash: [u8; 32],
        payload: Payload,
    },
}

/// The part of `changes` a send resumed at checkpoint `cp` of stream `name` continues with
/// (from `cp.resume_offset` on), after checking that `changes` are those the interrupted send
/// planned: their bytes before the resume offset must be the bytes its records covered there
/// (`cp`'s touched bytes). Changes planned otherwise (another `--since`/`--base`,
/// `--block-size` or refinement choice) would give a continuation the receiver refuses only
/// at its trailer, after the whole resend; this refuses it before anything is sent.
pub fn rest_after(changes: &ChangeSet, cp: &Checkpoint, name: &str) -> Result<ChangeSet> {
    let rest = changes.clipped(cp.resume_offset)?;
    let before = changes.changed_bytes().0 - rest.changed_bytes().0;
    if before != cp.totals.touched_bytes {
        return Err(Error::InvalidArgument(format!(
            "{name}: the interrupted send covered {} bytes before the resume offset {}, this \
             send's changes cover {before} there: they were planned differently (resume with \
             the interrupted send's options); nothing was sent",
            cp.totals.touched_bytes, cp.resume_offset
        )));
    }
    Ok(rest)
}

/// Where a data part's payload is.
enum Payload {
    /// Compressed bytes of its own.
    Packed(Vec<u8>),
    /// Stored raw: this range of its job's buffer (no copy).
    Raw(std::ops::Range<usize>),
}

/// A job's encoded parts, with the buffer their raw payloads lie in.
type Encoded = (Vec<Part>, Vec<u8>);

/// Stream `changes` of the image or device at `source` into `out`.
///
/// `progress(done, total)` is called with destination bytes handled so far.
pub fn send_changes<W: Write>(
    source: &Path,
    changes: &ChangeSet,
    header: &Header,
    out: W,
    out_name: &str,
    opts: EncodeOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(W, SendSummary)> {
    let file = File::open(source).map_err(|e| Error::io(source, e))?;
    let chunk = opts.chunk.clamp(4096, super::frame::MAX_PLAIN_LEN as usize);
    let zblock = (header.block_size.0 as usize).clamp(4096, chunk);
    let resumed;
    let changes = match &opts.resume {
        None => changes,
        Some(cp) => {
            resumed = rest_after(changes, cp, out_name)?;
            &resumed
        }
    };
    let mut writer = StreamWriter::new(out, out_name, header)?;
    if let Some(every) = opts.checkpoint_every {
        writer.set_checkpoint_every(every);
    }
    if let Some(cp) = &opts.resume {
        writer.resume_from(cp)?;
    }
    let total = changes.changed_bytes().0;
    let mut summary = SendSummary::default();
    let (token_tx, token_rx) = sync_channel::<()>(opts.in_flight.max(1));
    for _ in 0..opts.in_flight.max(1) {
        token_tx.send(()).expect("receiver alive");
    }
    let (job_tx, job_rx) = sync_channel::<(u64, Job)>(opts.in_flight.max(1));
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = channel::<(u64, Result<Encoded>)>();
    // Spent job buffers, back from the writer once their parts are written, reused for later
    // jobs: no allocation and zero-filling of a fresh buffer per MiB (fresh pages are what
    // costs under QEMU/TCG: docs/performance.md). At most `in_flight` are kept.
    let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(opts.in_flight.max(1));
    let leaves = &opts.leaves;
    std::thread::scope(|s| -> Result<()> {
        // Owned by this closure, so that when the writing below stops early (the stream's
        // reader went away: EPIPE) it is dropped before the scope joins the threads: the
        // reader, waiting for a token, then ends instead of waiting forever.
        let token_tx = token_tx;
        let reader_res = res_tx.clone();
        s.spawn(move || {
            let mut holes = crate::blockhash::holes::Holes::new(&file);
            let mut ahead = super::prefetch::Prefetch::new(changes.extents());
            let mut seq = 0u64;
            // Send one job (its token is already taken); false when the pipeline stopped.
            let mut send = |job: Job| {
                let ok = job_tx.send((seq, job)).is_ok();
                seq += 1;
                ok
            };
            // Send the job under construction, then `job` on a token of its own.
            let alone = |job: Job, pieces: &mut Pieces, send: &mut dyn FnMut(Job) -> bool| {
                let data = std::mem::take(pieces);
                (data.pieces.is_empty() || send(Job::Data(data.pieces, data.buf)))
                    && token_rx.recv().is_ok()
                    && send(job)
            };
            let mut job = Pieces::default();
            for e in changes.extents() {
                let (off, len) = (e.offset.0, e.length.0);
                if e.kind == ExtentKind::Removed {
                    if !alone(Job::Discard(off, len), &mut job, &mut send) {
                        return;
                    }
                    continue;
                }
                let mut pos = off;
                while pos < off + len {
                    // Chunks start at multiples of `chunk`, so a chunk-sized (leaf-sized by
                    // default) data run lines up with a fingerprint leaf whose hash is known.
                    let to_boundary = chunk as u64 - pos % chunk as u64;
                    let n = (off + len - pos).min(to_boundary) as usize;
                    // A hole of a sparse file at least a chunk long (or to the extent's end)
                    // is zeroes: one job for all of it, nothing read.
                    let hole = holes.hole_len(pos, off + len);
                    if hole >= n as u64 {
                        if !alone(Job::Hole(pos, hole), &mut job, &mut send) {
                            return;
                        }
                        pos += hole;
                        continue;
                    }
                    let full = job.used + n > chunk || job.pieces.len() >= PIECES_PER_JOB;
                    if full && !job.pieces.is_empty() {
                        let data = std::mem::take(&mut job);
                        if !send(Job::Data(data.pieces, data.buf)) {
                            return;
                        }
                    }
                    if job.pieces.is_empty() {
                        if token_rx.recv().is_err() {
                            return;
                        }
                        // A whole chunk's capacity from the start: growing a buffer piece by
                        // piece reallocates it into fresh (page-faulting) memory each time.
                        job.buf = pool_rx
                            .try_recv()
                            .unwrap_or_else(|_| Vec::with_capacity(chunk));
                    }
                    ahead.before_read(pos, |o, l| super::prefetch::willneed(&file, o, l));
                    let at = job.used;
                    if job.buf.len() < at + n {
                        job.buf.resize(at + n, 0);
                    }
                    job.used += n;
                    if let Err(err) = file.read_exact_at(&mut job.buf[at..at + n], pos) {
                        let _ = reader_res.send((seq, Err(Error::io(source, err))));
                        return;
                    }
                    job.pieces.push((pos, n));
                    pos += n as u64;
                }
            }
            if !job.pieces.is_empty() {
                send(Job::Data(job.pieces, job.buf));
            }
        });
        for _ in 0..opts.workers.max(1) {
            let rx = Arc::clone(&job_rx);
            let tx = res_tx.clone();
            s.spawn(move || {
                let mut zc = match zstd::bulk::Compressor::new(opts.level) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send((0, Err(Error::io("zstd", e))));
                        return;
                    }
                };
                loop {
                    let job = rx.lock().expect("no panics while held").recv();
                    let Ok((seq, job)) = job else { return };
                    let parts = match job {
                        Job::Discard(o, l) => Ok((vec![Part::Discard(o, l)], Vec::new())),
                        Job::Hole(o, l) => Ok((vec![Part::Zero(o, l)], Vec::new())),
                        Job::Data(pieces, buf) => {
                            encode_pieces(&pieces, buf, zblock, &mut zc, leaves)
                        }
                    };
                    if tx.send((seq, parts)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        let mut pending: BTreeMap<u64, Result<Encoded>> = BTreeMap::new();
        let mut next = 0u64;
        let mut zero_run: Option<(u64, u64)> = None;
        let mut done = 0u64;
        for (seq, parts) in res_rx.iter() {
            pending.insert(seq, parts);
            while let Some(encoded) = pending.remove(&next) {
                let (parts, buf) = encoded?;
                for part in parts {
                    write_part(
                        &mut writer,
                        part,
                        &buf,
                        &mut zero_run,
                        &mut summary,
                        &mut done,
                    )?;
                }
                if buf.capacity() >= chunk {
                    let _ = pool_tx.try_send(buf);
                }
                progress(done, total);
                next += 1;
                let _ = token_tx.send(());
            }
        }
        if let Some((o, l)) = zero_run.take() {
            writer.zero(o, l)?;
        }
        Ok(())
    })?;
    if summary.data_bytes + summary.zero_bytes + summary.discard_bytes != total {
        return Err(Error::io(
            source,
            std::io::Error::other("the send pipeline stopped early (a worker failed)"),
        ));
    }
    let (out, totals) = writer.finish()?;
    summary.totals = totals;
    Ok((out, summary))
}

/// Write one part (`buf`: its job's buffer, which raw payloads are ranges of).
fn write_part<W: Write>(
    w: &mut StreamWriter<W>,
    part: Part,
    buf: &[u8],
    zero_run: &mut Option<(u64, u64)>,
    sum: &mut SendSummary,
    done: &mut u64,
) -> Result<()> {
    if let Part::Zero(o, l) = part {
        sum.zero_bytes += l;
        *done += l;
        match zero_run {
            Some((zo, zl)) if *zo + *zl == o => *zl += l,
            _ => {
                if let Some((zo, zl)) = zero_run.replace((o, l)) {
                    w.zero(zo, zl)?;
                }
            }
        }
        return Ok(());
    }
    if let Some((zo, zl)) = zero_run.take() {
        w.zero(zo, zl)?;
    }
    match part {
        Part::Discard(o, l) => {
            sum.discard_bytes += l;
            *done += l;
            w.discard(o, l)
        }
        Part::Data {
            offset,
            plain_len,
            compression,
            hash,
            payload,
        } => {
            sum.data_records += 1;
            sum.data_bytes += plain_len as u64;
            *done += plain_len as u64;
            if compression == Compression::Zstd {
                sum.compressed_plain_bytes += plain_len as u64;
            }
            let payload = match &payload {
                Payload::Packed(p) => &p[..],
                Payload::Raw(r) => &buf[r.clone()],
            };
            w.data(&DataRecord {
                offset,
                plain_len,
                compression,
                hash,
                payload,
            })
        }
        Part::Zero(..) => unreachable!("handled above"),
    }
}

/// True when every byte of `b` is zero.
pub fn is_zero(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(16);
    words
        .by_ref()
        .all(|c| u128::from_ne_bytes(c.try_into().expect("16")) == 0)
        && words.remainder().iter().all(|&x| x == 0)
}

/// Encode each piece of a job's buffer (`pieces` lie back to back at the start of `buf`).
/// Raw payloads stay in `buf` (ranges of it), which comes back with the parts.
fn encode_pieces(
    pieces: &[(u64, usize)],
    buf: Vec<u8>,
    zblock: usize,
    zc: &mut zstd::bulk::Compressor<'_>,
    leaves: &LeafHashes,
) -> Result<Encoded> {
    let mut parts = Vec::new();
    let mut at = 0;
    for &(offset, n) in pieces {
        encode_chunk(offset, &buf, at..at + n, zblock, zc, leaves, &mut parts)?;
        at += n;
    }
    Ok((parts, buf))
}

/// Split the chunk `buf[range]` (at device `offset`) into zero runs and data runs, hashing
/// and compressing the data runs, and append them to `parts`.
fn encode_chunk(
    offset: u64,
    buf: &[u8],
    range: std::ops::Range<usize>,
    zblock: usize,
    zc: &mut zstd::bulk::Compressor<'_>,
    leaves: &LeafHashes,
    parts: &mut Vec<Part>,
) -> Result<()> {
    let mut runs: Vec<(usize, usize, bool)> = Vec::new();
    let mut pos = range.start;
    while pos < range.end {
        let end = (pos + zblock).min(range.end);
        let z = is_zero(&buf[pos..end]);
        match runs.last_mut() {
            Some((_, to, zero)) if *zero == z => *to = end,
            _ => runs.push((pos, end, z)),
        }
        pos = end;
    }
    for (from, to, zero) in runs {
        let o = offset + (from - range.start) as u64;
        parts.push(match zero {
            true => Part::Zero(o, (to - from) as u64),
            false => encode_data(o, buf, from..to, zc, leaves)?,
        });
    }
    Ok(())
}

/// Sample size for the compressibility check.
const SAMPLE: usize = 16 << 10;

/// Hash (unless `leaves` knows the hash) and (if worth it) compress the data run
/// `buf[run]` at device `offset`. A raw run's payload is its range of `buf` (no copy).
fn encode_data(
    offset: u64,
    buf: &[u8],
    run: std::ops::Range<usize>,
    zc: &mut zstd::bulk::Compressor<'_>,
    leaves: &LeafHashes,
) -> Result<Part> {
    let plain = &buf[run.clone()];
    let hash = leaves
        .get(offset, plain.len())
        .unwrap_or_else(|| *blake3::hash(plain).as_bytes());
    let sample = &plain[..plain.len().min(SAMPLE)];
    let zerr = |e| Error::io("zstd", e);
    let worth = zc.compress(sample).map_err(zerr)?.len() * 10 < sample.len() * 9;
    let packed = if worth {
        Some(zc.compress(plain).map_err(zerr)?).filter(|c| c.len() < plain.len())
    } else {
        None
    };
    let (compression, payload) = match packed {
        Some(c) => (Compression::Zstd, Payload::Packed(c)),
        None => (Compression::None, Payload::Raw(run)),
    };
    Ok(Part::Data {
        offset,
        plain_len: plain.len() as u32,
        compression,
        hash,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::Extent;
    use crate::stream::fingerprint::{fingerprint_keeping_leaves, LEAF};
    use crate::stream::{Fingerprint, Item, StreamReader};
    use crate::units::Bytes;

    fn header_for(size: usize, changes: &ChangeSet) -> Header {
        Header {
            source: "test".into(),
            source_uuid: String::new(),
            device_size: Bytes(size as u64),
            base_size: Bytes(size as u64),
            block_size: Bytes(4096),
            base: Fingerprint::NONE,
            target: Fingerprint::NONE,
            created_unix: 1,
            touched_bytes: changes.changed_bytes(),
        }
    }

    /// The stream `send_changes` writes for `changes` of the image at `src` (its size is the
    /// device size), in memory.
    fn encode_to_vec(
        src: &Path,
        changes: &ChangeSet,
        opts: EncodeOptions,
    ) -> (Vec<u8>, SendSummary) {
        let size = std::fs::metadata(src).unwrap().len() as usize;
        let header = header_for(size, changes);
        send_changes(src, changes, &header, Vec::new(), "t", opts, &mut |_, _| {}).unwrap()
    }

    /// Leaf hashes kept from the fingerprint become the hashes of whole-leaf records: the
    /// stream is byte for byte the one hashing every record gives; and they really are used
    /// (the leaf hashes of other bytes give records the reader refuses).
    #[test]
    fn kept_leaf_hashes_are_the_record_hashes_of_whole_leaves() {
        let size = 3 * LEAF as usize + 12345;
        let text = |seed: usize| -> Vec<u8> {
            (0..size).map(|i| (i / 97 + i % 13 + seed) as u8).collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let (src, other) = (dir.path().join("src.img"), dir.path().join("other.img"));
        std::fs::write(&src, text(0)).unwrap();
        std::fs::write(&other, text(1)).unwrap();
        // An unaligned start: chunks are cut at leaf boundaries after it.
        let extent = Extent::new(65536, size as u64 - 65536, ExtentKind::Changed);
        let changes = ChangeSet::from_extents(Bytes(4096), [extent]).unwrap();
        let send = |leaves: LeafHashes| {
            let opts = EncodeOptions {
                leaves,
                ..EncodeOptions::default()
            };
            encode_to_vec(&src, &changes, opts).0
        };
        let kept = |p: &Path| fingerprint_keeping_leaves(p, Bytes(size as u64)).unwrap().1;
        let hashed = send(LeafHashes::default());
        assert_eq!(send(kept(&src)), hashed);
        let read_all = |s: &[u8]| -> Result<usize> {
            let mut r = StreamReader::open(s, "t")?;
            let mut n = 0;
            while r.next_item()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(read_all(&hashed).unwrap(), 4);
        let err = read_all(&send(kept(&other))).unwrap_err();
        assert!(
            err.to_string().contains("does not match its blake3"),
            "{err}"
        );
    }

    /// A sink that takes `.0` more bytes, then fails like a pipe whose reader went away.
    struct Broken(usize);

    impl Write for Broken {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0 < b.len() {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink that fails part-way (the receiver died, the pipe broke) ends the send with the
    /// error, whatever the pipeline's threads were doing: it used to hang for ever, the
    /// reader waiting for a token the stopped writer would never hand back.
    #[test]
    fn a_failing_sink_ends_the_send_with_an_error_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        let mut img = vec![0u8; 24 << 20];
        let mut x = 1u64;
        for b in img.iter_mut() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            *b = (x >> 56) as u8;
        }
        std::fs::write(&src, &img).unwrap();
        let changes = ChangeSet::from_extents(
            Bytes(4096),
            [Extent::new(0, img.len() as u64, ExtentKind::Changed)],
        )
        .unwrap();
        let header = header_for(img.len(), &changes);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let opts = EncodeOptions {
                in_flight: 2,
                ..EncodeOptions::default()
            };
            let sent = send_changes(
                &src,
                &changes,
                &header,
                Broken(1 << 20),
                "t",
                opts,
                &mut |_, _| {},
            );
            let _ = done_tx.send(sent.map(|_| ()).map_err(|e| e.to_string()));
        });
        let got = done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("send_changes hung on a failing sink");
        let err = got.unwrap_err();
        assert!(err.contains("roken pipe"), "{err}");
    }

    /// Many scattered 4 KiB extents (some all zero) with discards between them: packed
    /// several to a job, they must still come out as one record each, in order, with zero
    /// pieces as zero records and discards where they were.
    #[test]
    fn small_extents_packed_into_jobs_keep_their_records_and_order() {
        let mut img = vec![0u8; 4 << 20];
        let (mut extents, mut want) = (Vec::new(), Vec::new());
        for i in 0..300u64 {
            let offset = i * 12288;
            if i % 50 == 25 {
                extents.push(Extent::new(offset, 4096, ExtentKind::Removed));
                want.push(Item::Discard { offset, len: 4096 });
                continue;
            }
            extents.push(Extent::new(offset, 4096, ExtentKind::Changed));
            if i % 7 == 0 {
                want.push(Item::Zero { offset, len: 4096 });
                continue;
            }
            let at = offset as usize;
            for (k, b) in img[at..at + 4096].iter_mut().enumerate() {
                *b = (k as u64 * 31 + i * 7 + 1) as u8;
            }
            let data = img[at..at + 4096].to_vec();
            want.push(Item::Data { offset, data });
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        std::fs::write(&src, &img).unwrap();
        let changes = ChangeSet::from_extents(Bytes(4096), extents).unwrap();
        let opts = EncodeOptions {
            workers: 3,
            in_flight: 2,
            ..EncodeOptions::default()
        };
        let (out, summary) = encode_to_vec(&src, &changes, opts);
        assert_eq!(summary.discard_bytes, 6 * 4096);
        let mut reader = StreamReader::open(&out[..], "t").unwrap();
        let mut got = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            if !matches!(item, Item::Checkpoint(_)) {
                got.push(item);
            }
        }
        assert_eq!(got, want);
    }
}
