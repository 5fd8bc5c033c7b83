//! The one walk over an exception store: header, then metadata areas in order until the list ends.
//!
//! Reads are positioned and in increasing offset order, one area (a chunk) at a time, in pieces
//! of at most [`PIECE_MAX`] bytes so memory stays bounded whatever chunk size a header claims.
//! The area where the list ends is the one a live snapshot is still appending to, and the
//! kernel rewrites it in place while we read; that area is read again until two reads give the
//! same exceptions. Full areas never change again (the kernel moves on to the next area), so
//! they are read once.
//!
//! When the source offers read-ahead readers ([`StoreSource::read_ahead`]), those read the
//! areas on threads of their own, a few areas per buffer, a bounded number of buffers ahead,
//! while this thread decodes; only the re-reads of the last area are done here.

use super::area::{scan_records, Scan};
use super::collect::{into_change_set, OldChunks};
use super::geometry::{Geometry, EXCEPTION_LEN};
use super::header::parse_header;
use super::problem::StoreProblem;
use super::source::StoreSource;
use crate::error::{Error, Result};
use crate::ChangeSet;
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Mutex;

/// The largest piece of a metadata area read at once.
pub const PIECE_MAX: u64 = 1 << 20;

/// Reads of the current area allowed before a live store is declared too busy to read.
pub const MAX_READS: u32 = 64;

/// Bytes read for the header (chunk 0 is at least a sector; 4 KiB suits `O_DIRECT` devices).
const HEADER_READ: u64 = 4096;

/// Bytes of consecutive pieces one read-ahead buffer holds (at least one piece): enough that
/// handing a buffer between threads costs little next to reading it.
const AHEAD_UNIT: u64 = 64 << 10;

/// Read-ahead buffers per reader thread (plus two, so the decoder always has one to work on):
/// enough that a reader keeps reading while a loaded machine is slow to schedule the decoder.
const AHEAD_PER_READER: usize = 8;

/// Read the whole exception store from `src` (named `name` in errors) into a [`ChangeSet`].
pub fn read_store<S: StoreSource + Send>(src: &mut S, name: &str) -> Result<ChangeSet> {
    let (geom, old_chunks) = walk(src, name)?;
    into_change_set(&geom, old_chunks, name)
}

/// Walk `src`: check the header, then collect the origin chunk of every listed exception.
fn walk<S: StoreSource + Send>(src: &mut S, name: &str) -> Result<(Geometry, OldChunks)> {
    let io = |e| Error::io(name, e);
    let len = src.store_len();
    let mut head = vec![0u8; len.min(HEADER_READ) as usize];
    src.read_exact_at(&mut head, 0).map_err(io)?;
    let header = parse_header(&head).map_err(|p| p.into_error(name))?;
    let geom = Geometry::new(&header, len).map_err(|p| p.into_error(name))?;
    let piece_len = geom.chunk_bytes().min(PIECE_MAX);
    let mut again = Direct::new(piece_len);
    let readers = src.read_ahead().map_err(io)?;
    let chunks = if readers.is_empty() {
        let mut first = Direct::new(piece_len);
        walk_areas(src, &mut first, &mut again, &geom, name)
    } else {
        let pieces_per_unit = (AHEAD_UNIT / piece_len).max(1);
        let buffers = readers.len() * AHEAD_PER_READER + 2;
        let unit_len = (pieces_per_unit * piece_len) as usize;
        let (free_tx, free_rx) = sync_channel(buffers);
        for _ in 0..buffers {
            // Cannot fail: the channel holds `buffers` items and its receiver is alive.
            let _ = free_tx.send(vec![0u8; unit_len]);
        }
        let shared = Shared {
            geom,
            piece_len,
            pieces_per_unit,
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            free: Mutex::new(free_rx),
        };
        let (done_tx, done_rx) = channel();
        std::thread::scope(|scope| {
            for reader in readers {
                let (shared, done) = (&shared, done_tx.clone());
                scope.spawn(move || read_ahead(reader, shared, done));
            }
            drop(done_tx);
            let mut first = Ahead {
                shared: &shared,
                done: done_rx,
                free: free_tx,
                pending: BTreeMap::new(),
                current: None,
            };
            let walked = walk_areas(src, &mut first, &mut again, &geom, name);
            // Dropping `first` closes both channels: readers blocked on either wake and end.
            shared.stop.store(true, Ordering::Relaxed);
            drop(first);
            walked
        })
    }?;
    Ok((geom, chunks))
}

/// The area loop: `first` gives each piece's first read, `again` re-reads the last area.
fn walk_areas<S: StoreSource, F: Pieces<S>>(
    src: &mut S,
    first: &mut F,
    again: &mut Direct,
    geom: &Geometry,
    name: &str,
) -> Result<OldChunks> {
    let len = src.store_len();
    let mut old_chunks = OldChunks::default();
    // Once an area had to be re-read (a live store still growing at its end), every later
    // area is read fresh too: `first` may have read it ahead before the kernel zeroed it.
    let mut read_fresh = false;
    for area in 0u64.. {
        let offset = area_in_store(geom, area, len).map_err(|p| p.into_error(name))?;
        let start = old_chunks.len();
        let mut scan = if read_fresh {
            scan_area(src, again, geom, area, offset, &mut old_chunks)
        } else {
            scan_area(src, first, geom, area, offset, &mut old_chunks)
        }
        .map_err(|e| e.into_error(name))?;
        if scan == Scan::Continues {
            old_chunks.accept_from(start);
            continue;
        }
        let mut reads = 1;
        loop {
            let first_end = old_chunks.len();
            let again = scan_area(src, again, geom, area, offset, &mut old_chunks)
                .map_err(|e| e.into_error(name))?;
            reads += 1;
            let agree = again == scan && old_chunks.agree(start, first_end);
            old_chunks.drain(start..first_end);
            scan = again;
            if agree {
                break;
            }
            if reads >= MAX_READS {
                return Err(StoreProblem::Unstable { area, reads }.into_error(name));
            }
        }
        read_fresh = true;
        old_chunks.accept_from(start);
        if scan == Scan::Ended {
            break;
        }
    }
    Ok(old_chunks)
}

/// Byte offset of metadata area `area`, refusing a store that ends before the area does.
fn area_in_store(geom: &Geometry, area: u64, len: u64) -> Result<u64, StoreProblem> {
    let end = geom
        .area_offset(area)
        .and_then(|o| Some((o, o.checked_add(geom.chunk_bytes())?)));
    match end {
        Some((offset, end)) if end <= len => Ok(offset),
        other => Err(StoreProblem::Truncated {
            needed: other.map_or(u64::MAX, |(_, e)| e),
            have: len,
            what: format!("metadata area {area}"),
        }),
    }
}

/// Why one area could not be scanned.
enum AreaError {
    Io(io::Error),
    Problem(StoreProblem),
}

impl AreaError {
    fn into_error(self, name: &str) -> Error {
        match self {
            AreaError::Io(e) => Error::io(name, e),
            AreaError::Problem(p) => p.into_error(name),
        }
    }
}

/// Where the bytes of piece `index` (counted over all areas, `piece_len` bytes at `offset`) come from.
trait Pieces<S> {
    fn piece(&mut self, src: &mut S, index: u64, offset: u64) -> io::Result<&[u8]>;
}

/// Pieces read on demand from the walk's own source.
struct Direct(Vec<u8>);

impl Direct {
    fn new(piece_len: u64) -> Self {
        Direct(vec![0u8; piece_len as usize])
    }
}

impl<S: StoreSource> Pieces<S> for Direct {
    fn piece(&mut self, src: &mut S, _index: u64, offset: u64) -> io::Result<&[u8]> {
        src.read_exact_at(&mut self.0, offset)?;
        Ok(&self.0)
    }
}

/// Read metadata area `area` at `offset` piece by piece, appending its exceptions' origin chunks.
/// [`Scan::Continues`] means the area was full.
fn scan_area<S, P: Pieces<S>>(
    src: &mut S,
    pieces: &mut P,
    geom: &Geometry,
    area: u64,
    offset: u64,
    out: &mut OldChunks,
) -> std::result::Result<Scan, AreaError> {
    let piece_len = geom.chunk_bytes().min(PIECE_MAX);
    let per_area = geom.chunk_bytes() / piece_len;
    for p in 0..per_area {
        let bytes = pieces
            .piece(src, area * per_area + p, offset + p * piece_len)
            .map_err(AreaError::Io)?;
        let first = p * piece_len / EXCEPTION_LEN;
        if scan_records(geom, area, first, bytes, out).map_err(AreaError::Problem)? == Scan::Ended {
            return Ok(Scan::Ended);
        }
    }
    Ok(Scan::Continues)
}

/// What the read-ahead threads share: the layout, the next unit to read, the stop flag and
/// the buffers free to fill.
struct Shared {
    geom: Geometry,
    piece_len: u64,
    pieces_per_unit: u64,
    next: AtomicU64,
    stop: AtomicBool,
    free: Mutex<Receiver<Vec<u8>>>,
}

/// A filled unit: its buffer and how many of its pieces lie inside the store.
type Unit = io::Result<(Vec<u8>, u64)>;

/// One read-ahead thread: take a free buffer, then the next unit, fill it, hand it over.
/// A buffer is taken before the unit number, so every unit taken has a buffer and the decoder
/// waiting for the lowest one is never blocked by units above it holding all buffers.
fn read_ahead<S: StoreSource>(mut reader: S, shared: &Shared, done: Sender<(u64, Unit)>) {
    loop {
        let next_buffer = shared.free.lock().map(|free| free.recv());
        let Ok(Ok(mut buf)) = next_buffer else {
            return;
        };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let unit = shared.next.fetch_add(1, Ordering::Relaxed);
        let filled = fill_unit(&mut reader, shared, unit, &mut buf).map(|n| (buf, n));
        let last = !matches!(filled, Ok((_, n)) if n == shared.pieces_per_unit);
        if done.send((unit, filled)).is_err() || last {
            return;
        }
    }
}

/// Read the pieces of `unit` that lie inside the store into `buf`; how many that was.
fn fill_unit<S: StoreSource>(
    reader: &mut S,
    shared: &Shared,
    unit: u64,
    buf: &mut [u8],
) -> io::Result<u64> {
    let per_area = shared.geom.chunk_bytes() / shared.piece_len;
    let len = reader.store_len();
    let mut filled = 0;
    for (i, piece) in buf.chunks_exact_mut(shared.piece_len as usize).enumerate() {
        let index = unit
            .checked_mul(shared.pieces_per_unit)
            .and_then(|u| u.checked_add(i as u64));
        let offset = index.and_then(|x| {
            let area = shared.geom.area_offset(x / per_area)?;
            area.checked_add(x % per_area * shared.piece_len)
        });
        match offset {
            Some(o)
                if o.checked_add(shared.piece_len)
                    .is_some_and(|end| end <= len) =>
            {
                reader.read_exact_at(piece, o)?;
                filled += 1;
            }
            _ => break,
        }
    }
    Ok(filled)
}

/// Pieces as the read-ahead threads delivered them, put back in order.
struct Ahead<'a> {
    shared: &'a Shared,
    done: Receiver<(u64, Unit)>,
    free: SyncSender<Vec<u8>>,
    /// Units that arrived before the one the walk needs.
    pending: BTreeMap<u64, Unit>,
    /// The unit being decoded: its number, buffer and pieces inside the store.
    current: Option<(u64, Vec<u8>, u64)>,
}

impl Ahead<'_> {
    /// Make `unit` the current one, waiting for it if it has not arrived yet.
    fn load(&mut self, unit: u64) -> io::Result<()> {
        if let Some((_, buf, _)) = self.current.take() {
            // Cannot block: the channel has room for every buffer there is.
            let _ = self.free.send(buf);
        }
        let filled = loop {
            if let Some(u) = self.pending.remove(&unit) {
                break u;
            }
            match self.done.recv() {
                Ok((u, filled)) if u == unit => break filled,
                Ok((u, filled)) => {
                    self.pending.insert(u, filled);
                }
                Err(_) => {
                    return Err(io::Error::other(
                        "read-ahead threads ended before the list did",
                    ))
                }
            }
        };
        let (buf, n) = filled?;
        self.current = Some((unit, buf, n));
        Ok(())
    }
}

impl<S> Pieces<S> for Ahead<'_> {
    fn piece(&mut self, _src: &mut S, index: u64, _offset: u64) -> io::Result<&[u8]> {
        let (unit, within) = (
            index / self.shared.pieces_per_unit,
            index % self.shared.pieces_per_unit,
        );
        if self.current.as_ref().map(|c| c.0) != Some(unit) {
            self.load(unit)?;
        }
        let piece_len = self.shared.piece_len as usize;
        match &self.current {
            Some((_, buf, n)) if within < *n => {
                let at = within as usize * piece_len;
                Ok(&buf[at..at + piece_len])
            }
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}
