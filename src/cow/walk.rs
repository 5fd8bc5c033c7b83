//! The one walk over an exception store: header, then metadata areas in order until the list ends.
//!
//! Reads are positioned and in increasing offset order, one area (a chunk) at a time, in pieces
//! of at most [`PIECE_MAX`] bytes so memory stays bounded whatever chunk size a header claims.
//! The area where the list ends is the one a live snapshot is still appending to, and the
//! kernel rewrites it in place while we read; that area is read again until two reads give the
//! same exceptions. Full areas never change again (the kernel moves on to the next area), so
//! they are read once.

use super::area::{scan_records, Scan};
use super::collect::into_change_set;
use super::geometry::Geometry;
use super::header::parse_header;
use super::problem::StoreProblem;
use super::source::StoreSource;
use crate::error::{Error, Result};
use crate::ChangeSet;

/// The largest piece of a metadata area read at once.
pub const PIECE_MAX: u64 = 1 << 20;

/// Reads of the current area allowed before a live store is declared too busy to read.
pub const MAX_READS: u32 = 64;

/// Bytes read for the header (chunk 0 is at least a sector; 4 KiB suits `O_DIRECT` devices).
const HEADER_READ: u64 = 4096;

/// Read the whole exception store from `src` (named `name` in errors) into a [`ChangeSet`].
pub fn read_store<S: StoreSource>(src: &mut S, name: &str) -> Result<ChangeSet> {
    let (geom, old_chunks) = walk(src, name)?;
    into_change_set(&geom, old_chunks, name)
}

/// Walk `src`: check the header, then collect the origin chunk of every listed exception.
fn walk<S: StoreSource>(src: &mut S, name: &str) -> Result<(Geometry, Vec<u64>)> {
    let io = |e| Error::io(name, e);
    let len = src.store_len();
    let mut head = vec![0u8; len.min(HEADER_READ) as usize];
    src.read_exact_at(&mut head, 0).map_err(io)?;
    let header = parse_header(&head).map_err(|p| p.into_error(name))?;
    let geom = Geometry::new(&header, len).map_err(|p| p.into_error(name))?;
    let mut piece = vec![0u8; geom.chunk_bytes().min(PIECE_MAX) as usize];
    let mut old_chunks = Vec::new();
    for area in 0u64.. {
        let offset = area_in_store(&geom, area, len).map_err(|p| p.into_error(name))?;
        let start = old_chunks.len();
        let mut scan = scan_area(src, &geom, area, offset, &mut piece, &mut old_chunks)
            .map_err(|e| e.into_error(name))?;
        if scan == Scan::Continues {
            continue;
        }
        let mut reads = 1;
        loop {
            let first_end = old_chunks.len();
            let again = scan_area(src, &geom, area, offset, &mut piece, &mut old_chunks)
                .map_err(|e| e.into_error(name))?;
            reads += 1;
            let agree = again == scan && old_chunks[start..first_end] == old_chunks[first_end..];
            old_chunks.drain(start..first_end);
            scan = again;
            if agree {
                break;
            }
            if reads >= MAX_READS {
                return Err(StoreProblem::Unstable { area, reads }.into_error(name));
            }
        }
        if scan == Scan::Ended {
            break;
        }
    }
    Ok((geom, old_chunks))
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
    Io(std::io::Error),
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

/// Read metadata area `area` at `offset` piece by piece, appending its exceptions' origin chunks.
/// [`Scan::Continues`] means the area was full.
fn scan_area<S: StoreSource>(
    src: &mut S,
    geom: &Geometry,
    area: u64,
    offset: u64,
    piece: &mut [u8],
    out: &mut Vec<u64>,
) -> std::result::Result<Scan, AreaError> {
    let piece_len = piece.len() as u64;
    for p in 0..geom.chunk_bytes() / piece_len {
        src.read_exact_at(piece, offset + p * piece_len)
            .map_err(AreaError::Io)?;
        let first = p * piece_len / super::geometry::EXCEPTION_LEN;
        if scan_records(geom, area, first, piece, out).map_err(AreaError::Problem)? == Scan::Ended {
            return Ok(Scan::Ended);
        }
    }
    Ok(Scan::Continues)
}
