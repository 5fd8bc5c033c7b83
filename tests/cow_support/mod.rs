//! Test-side writer of dm-snapshot persistent exception stores, following the kernel's allocator.
//!
//! Written from the format facts (formats.md §1), independently of the reader under test:
//! chunk 0 is the header; with `E = chunk_bytes / 16`, metadata area `k` is chunk `1 + k(E+1)`;
//! data chunks are handed out from chunk 2 upwards, skipping metadata chunks; record `i` goes to
//! slot `i % E` of area `i / E`; when an area fills, the next one is zeroed (so a store always
//! holds one area that is not full). Shared by the tests/cow_*.rs crates and benches/cow_parse.rs.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// "SnAp" as a little-endian u32.
pub const MAGIC: u32 = 0x7041_6e53;

/// A store to write: header fields, the origin chunks in commit order, and the free space.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    /// Header magic.
    pub magic: u32,
    /// Header valid flag.
    pub valid: u32,
    /// Header version.
    pub version: u32,
    /// Chunk size in sectors.
    pub chunk_sectors: u32,
    /// Origin chunks in the order the kernel committed them.
    pub old_chunks: Vec<u64>,
    /// Unallocated chunks after the last used one (the snapshot's free space).
    pub free_chunks: u64,
}

impl StoreSpec {
    /// A well-formed store of `old_chunks` with `chunk_sectors`-sector chunks.
    pub fn new(chunk_sectors: u32, old_chunks: Vec<u64>) -> Self {
        StoreSpec {
            magic: MAGIC,
            valid: 1,
            version: 1,
            chunk_sectors,
            old_chunks,
            free_chunks: 3,
        }
    }

    /// Bytes per chunk.
    pub fn chunk_bytes(&self) -> u64 {
        u64::from(self.chunk_sectors) * 512
    }

    /// Records per metadata area.
    pub fn per_area(&self) -> u64 {
        self.chunk_bytes() / 16
    }

    /// Chunk index of metadata area `k`.
    pub fn area_chunk(&self, k: u64) -> u64 {
        1 + k * (self.per_area() + 1)
    }

    /// The `(old_chunk, new_chunk)` records in on-disk order, as the kernel allocates them.
    pub fn records(&self) -> Vec<(u64, u64)> {
        let stride = self.per_area() + 1;
        let mut next_free = 2u64;
        self.old_chunks
            .iter()
            .map(|&old| {
                let new = next_free;
                next_free += 1;
                if next_free % stride == 1 {
                    next_free += 1;
                }
                (old, new)
            })
            .collect()
    }

    /// The layout: `(byte offset, bytes)` writes and the store's total length.
    pub fn layout(&self) -> (Vec<(u64, Vec<u8>)>, u64) {
        self.layout_with(&self.records())
    }

    /// The layout with explicit records (for corrupt stores), placed in order from area 0.
    pub fn layout_with(&self, records: &[(u64, u64)]) -> (Vec<(u64, Vec<u8>)>, u64) {
        let cb = self.chunk_bytes();
        let e = self.per_area();
        let mut header = vec![0u8; cb as usize];
        for (i, v) in [self.magic, self.valid, self.version, self.chunk_sectors]
            .iter()
            .enumerate()
        {
            header[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let mut writes = vec![(0u64, header)];
        // One area past the last record's area when it is exactly full: the kernel zeroes it.
        let areas = records.len() as u64 / e + 1;
        for k in 0..areas {
            let mut area = vec![0u8; cb as usize];
            let first = (k * e) as usize;
            let last = ((k + 1) * e).min(records.len() as u64) as usize;
            for (slot, (old, new)) in records[first..last].iter().enumerate() {
                area[slot * 16..slot * 16 + 8].copy_from_slice(&old.to_le_bytes());
                area[slot * 16 + 8..slot * 16 + 16].copy_from_slice(&new.to_le_bytes());
            }
            writes.push((self.area_chunk(k) * cb, area));
        }
        let max_new = records.iter().map(|r| r.1).max().unwrap_or(1);
        let used = (self.area_chunk(areas - 1) + 1).max(max_new.saturating_add(1));
        (
            writes,
            used.saturating_add(self.free_chunks).saturating_mul(cb),
        )
    }

    /// The whole store in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (writes, len) = self.layout();
        render(&writes, len)
    }

    /// Write the store to `path` as a sparse file (data chunks are holes).
    pub fn write_sparse(&self, path: &Path) {
        let (writes, len) = self.layout();
        let f = std::fs::File::create(path).unwrap();
        f.set_len(len).unwrap();
        for (off, bytes) in writes {
            f.write_all_at(&bytes, off).unwrap();
        }
        (&f).flush().unwrap();
    }

    /// The change set this store must yield, derived from the origin chunks alone:
    /// `(offset, length)` runs of consecutive chunks, all of kind "changed".
    pub fn expected_runs(&self) -> Vec<(u64, u64)> {
        expected_runs(&self.old_chunks, self.chunk_bytes())
    }
}

/// Lay `writes` out in a zeroed buffer of `len` bytes (writes past `len` are cut).
pub fn render(writes: &[(u64, Vec<u8>)], len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    for (off, bytes) in writes {
        let start = (*off as usize).min(buf.len());
        let end = (start + bytes.len()).min(buf.len());
        buf[start..end].copy_from_slice(&bytes[..end - start]);
    }
    buf
}

/// Runs of consecutive chunks in the set `chunks`, in bytes.
pub fn expected_runs(chunks: &[u64], chunk_bytes: u64) -> Vec<(u64, u64)> {
    let set: BTreeSet<u64> = chunks.iter().copied().collect();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for c in set {
        match runs.last_mut() {
            Some((start, n)) if *start + *n == c => *n += 1,
            _ => runs.push((c, 1)),
        }
    }
    runs.into_iter()
        .map(|(s, n)| (s * chunk_bytes, n * chunk_bytes))
        .collect()
}

/// A deterministic shuffle of `0..n` scaled and offset (xorshift, no external RNG needed).
pub fn shuffled_chunks(n: u64, seed: u64, spread: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).map(|i| i * spread).collect();
    let mut s = seed | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}
