//! Holes of sparse regular files (`SEEK_DATA` / `SEEK_HOLE`): ranges that read as zeroes
//! without being stored, so readers can skip them instead of reading and hashing zeroes.
//!
//! Answers are advice for speed only: a range reported as data may still be all zero, and
//! anything that is not a regular file (a block device) or whose filesystem cannot answer is
//! treated as data throughout.

use nix::unistd::{lseek, Whence};
use std::fs::File;

/// A cursor over one file's holes, cheapest when asked about ranges in increasing order (it
/// remembers the last hole and data run it found, so a long run costs two `lseek`s in all).
#[derive(Debug)]
pub struct Holes<'a> {
    file: &'a File,
    sparse: bool,
    /// A known hole `[start, end)`.
    hole: (u64, u64),
    /// A known data run `[start, end)`.
    data: (u64, u64),
}

impl<'a> Holes<'a> {
    /// Holes of `file`; only regular files can have any (one `statx` to tell).
    pub fn new(file: &'a File) -> Self {
        Self::of_kind(file, file.metadata().is_ok_and(|m| m.is_file()))
    }

    /// Holes of `file`, whose kind the caller already knows (`regular`: a regular file;
    /// anything else has none), for callers that ask afresh for every record and must not
    /// pay [`Self::new`]'s `statx` each time.
    pub fn of_kind(file: &'a File, regular: bool) -> Self {
        Holes {
            file,
            sparse: regular,
            hole: (0, 0),
            data: (0, 0),
        }
    }

    /// How many bytes from `start` (at most `end - start`) lie in a hole: 0 when `start` is in
    /// data (or unsure).
    pub fn hole_len(&mut self, start: u64, end: u64) -> u64 {
        if start < end && self.is_hole(start, start + 1) {
            self.hole.1.min(end) - start
        } else {
            0
        }
    }

    /// True when `[start, end)` holds no data: it reads as zeroes (past the end of the file
    /// counts as a hole too). False when unsure.
    pub fn is_hole(&mut self, start: u64, end: u64) -> bool {
        if !self.sparse || start >= end {
            return false;
        }
        if (self.data.0..self.data.1).contains(&start) {
            return false;
        }
        if self.hole.0 <= start && end <= self.hole.1 {
            return true;
        }
        if (self.hole.0..self.hole.1).contains(&start) && self.data.0 == self.hole.1 {
            return false; // the hole ends inside the range, where known data starts
        }
        let Ok(at) = i64::try_from(start) else {
            return false;
        };
        match lseek(self.file, at, Whence::SeekData) {
            // No data at or after `start`: a hole up to the end (and past it).
            Err(nix::errno::Errno::ENXIO) => {
                self.hole = (start, u64::MAX);
                true
            }
            Err(_) => {
                self.sparse = false; // the filesystem cannot tell: read everything
                false
            }
            Ok(data) => {
                let data = data as u64;
                self.hole = (start, data);
                let hole_at =
                    lseek(self.file, data as i64, Whence::SeekHole).map_or(u64::MAX, |h| h as u64);
                self.data = (data, hole_at);
                data >= end
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn finds_holes_and_data_of_a_sparse_file() {
        let f = tempfile::tempfile().unwrap();
        let mib = 1u64 << 20;
        f.set_len(8 * mib).unwrap();
        f.write_all_at(&[1u8; 4096], 3 * mib).unwrap();
        f.sync_all().unwrap();
        let mut h = Holes::new(&f);
        assert!(h.is_hole(0, mib));
        assert!(h.is_hole(mib, 2 * mib));
        assert!(
            !h.is_hole(2 * mib, 4 * mib),
            "the range holds data at 3 MiB"
        );
        assert!(!h.is_hole(3 * mib, 4 * mib));
        assert!(h.is_hole(4 * mib, 8 * mib));
        assert!(h.is_hole(8 * mib, 9 * mib), "past the end reads as zeroes");
        // Out of order still answers correctly.
        assert!(!h.is_hole(3 * mib, 3 * mib + 1));
        assert!(h.is_hole(0, 3 * mib));
        assert_eq!(h.hole_len(mib, 8 * mib), 2 * mib);
        assert_eq!(h.hole_len(3 * mib, 8 * mib), 0);
        assert_eq!(h.hole_len(5 * mib, 7 * mib), 2 * mib);
    }
}
