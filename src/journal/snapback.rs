//! Snapback: kept undo journals as an ordered, checksummed chain of point-in-time images.
//!
//! With `--snapback <dir>`, a committed apply's undo journal is moved into `dir` as
//! `<seq:06>-<target fp prefix>.undo` instead of being deleted. Each image is a complete
//! journal (CRC-framed, with its commit frame) whose head names the state it leads back to
//! (`base`) and the state it must be applied to (`target`); consecutive images chain
//! (image *n*'s target is image *n+1*'s base), which [`chain`] checks.
//!
//! Rolling back one image converts it into an ordinary delta stream (base = its target,
//! target = its base) and applies that through the journaled receiver, so a rollback is
//! itself atomic and crash-safe, and refuses to run against a destination in another state.

use super::dest::sync_dir;
use super::format::{JournalHead, JournalReader, UndoEntry};
use crate::error::{Error, Result};
use crate::stream::record::{Compression, DataRecord};
use crate::stream::{Header, StreamWriter};
use crate::units::Bytes;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

/// One kept undo image.
#[derive(Debug, Clone)]
pub struct SnapPoint {
    /// Position in the chain (1 = oldest).
    pub seq: u64,
    /// The image file.
    pub path: PathBuf,
    /// Its journal head (base = the state it restores).
    pub head: JournalHead,
    /// Bytes it restores.
    pub bytes: u64,
}

fn bad(path: &Path, detail: String) -> Error {
    Error::Integrity {
        stream: path.display().to_string(),
        detail,
    }
}

fn open(path: &Path) -> Result<JournalReader<BufReader<File>>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    JournalReader::open(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| Error::io(path, e))?
        .ok_or_else(|| bad(path, "snapback image has no valid head".into()))
}

/// Read one image completely; it must end with a valid commit.
fn scan(seq: u64, path: &Path) -> Result<SnapPoint> {
    let mut r = open(path)?;
    let mut bytes = 0;
    while let Some(e) = r.next_entry().map_err(|e| Error::io(path, e))? {
        bytes += match e {
            UndoEntry::Data { data, .. } => data.len() as u64,
            UndoEntry::Zero { len, .. } => len,
        };
    }
    if !r.committed {
        return Err(bad(
            path,
            "snapback image is damaged (no valid commit)".into(),
        ));
    }
    Ok(SnapPoint {
        seq,
        path: path.to_path_buf(),
        head: r.head,
        bytes,
    })
}

/// The images in `dir` for destination `canonical`, oldest first, checked as a chain.
pub fn chain(dir: &Path, canonical: &str) -> Result<Vec<SnapPoint>> {
    let mut files: Vec<(u64, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "undo"))
            .filter_map(|p| {
                let seq = p.file_name()?.to_str()?.split('-').next()?.parse().ok()?;
                Some((seq, p))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(dir, e)),
    };
    files.sort();
    let mut points: Vec<SnapPoint> = Vec::with_capacity(files.len());
    for (seq, path) in files {
        let p = scan(seq, &path)?;
        if p.head.dest != canonical {
            continue;
        }
        if let Some(prev) = points.last() {
            if prev.head.target != p.head.base {
                return Err(bad(
                    &p.path,
                    format!(
                        "snapback chain is broken: {} leads to {} but this image starts from {}",
                        prev.path.display(),
                        prev.head.target,
                        p.head.base
                    ),
                ));
            }
        }
        points.push(p);
    }
    Ok(points)
}

/// Move a committed journal, cut to its first `len` bytes (its valid part, without the
/// preallocated or reused rest), into `dir` as the newest image of the chain.
pub fn keep(journal: &Path, len: u64, dir: &Path, head_target: &str) -> Result<PathBuf> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(journal)
        .and_then(|f| f.set_len(len))
        .map_err(|e| Error::io(journal, e))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let next = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0)
        + 1;
    let to = dir.join(format!(
        "{next:06}-{}.undo",
        &head_target[..16.min(head_target.len())]
    ));
    if std::fs::rename(journal, &to).is_err() {
        // Another filesystem: copy durably, then drop the journal.
        std::fs::copy(journal, &to)
            .and_then(|_| File::open(&to)?.sync_all())
            .map_err(|e| Error::io(&to, e))?;
        std::fs::remove_file(journal).map_err(|e| Error::io(journal, e))?;
    }
    sync_dir(dir)?;
    if let Some(parent) = journal.parent() {
        sync_dir(parent)?;
    }
    Ok(to)
}

/// Write image `p` as a delta stream from its target state back to its base state.
pub fn to_stream<W: Write>(p: &SnapPoint, out: W) -> Result<W> {
    let h = &p.head;
    let header = Header {
        source: format!("snapback {}", p.path.display()),
        source_uuid: String::new(),
        device_size: Bytes(h.device_size),
        base_size: Bytes(h.device_size),
        block_size: Bytes(4096),
        base: h.target,
        target: h.base,
        created_unix: h.created_unix,
        touched_bytes: Bytes(p.bytes),
    };
    let name = p.path.display().to_string();
    let mut w = StreamWriter::new(out, &name, &header)?;
    let mut r = open(&p.path)?;
    while let Some(e) = r.next_entry().map_err(|e| Error::io(&p.path, e))? {
        match e {
            UndoEntry::Data { offset, data } => w.data(&DataRecord {
                offset,
                plain_len: data.len() as u32,
                compression: Compression::None,
                hash: *blake3::hash(&data).as_bytes(),
                payload: &data,
            })?,
            UndoEntry::Zero { offset, len } => w.zero(offset, len)?,
        }
    }
    Ok(w.finish()?.0)
}
