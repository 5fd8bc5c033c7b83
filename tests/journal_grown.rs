//! A grown volume's new part is not journaled. The source grew since the last sync and the
//! destination was grown first (`lvextend`; here `truncate` or a loop device of the new size)
//! and holds junk past the base's size; `send --base` sends the grown part as data and zero
//! records. The apply must write every one of them (none skipped as "already zero": the
//! junk is not zero) and end at exactly the target, journal no old byte past the base's size
//! (so the journal directory needs room for the base part only), and a killed apply must
//! recover to exactly the base over the base's size. A full sync over such a destination
//! still journals everything, as do a `--force`d apply and a resumed one (span.rs says why).

mod loop_support;
mod stream_util;
use lvmsync::journal::format::{JournalReader, UndoEntry};
use lvmsync::stream::StreamReader;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use stream_util::*;

const BASE: usize = 4 << 20;
const GROWN: usize = 12 << 20;

struct Grown {
    d: tempfile::TempDir,
    v0: PathBuf,
    v1: PathBuf,
    delta: PathBuf,
    dest: PathBuf,
    st: PathBuf,
}

/// A 4 MiB base, a 12 MiB target (a few edits in the base part; the grown part zero but for
/// 16 runs of data), the delta between them made by `lvmsync send --base`, and a destination
/// file holding the base, grown to 12 MiB with junk past 4 MiB.
fn grown() -> Grown {
    let d = tmp();
    let (v0, v1) = base_and_target(&d, BASE, 0x6a6a, 0x33, 6);
    let mut img = std::fs::read(&v1).unwrap();
    img.resize(GROWN, 0);
    let mut rng = Rng(0x44);
    for k in 0..16 {
        let at = BASE + k * (512 << 10) + 100_000;
        rng.fill(&mut img[at..at + (64 << 10)]);
    }
    write(&v1, &img);
    let delta = at(&d, "grown.lvd");
    ok(&send_base(&v0, &v1, &delta));
    let h = StreamReader::open(std::fs::File::open(&delta).unwrap(), "grown.lvd")
        .unwrap()
        .header()
        .clone();
    assert_eq!(
        (h.base_size.0, h.device_size.0),
        (BASE as u64, GROWN as u64)
    );
    assert!(h.touched_bytes.0 >= (GROWN - BASE) as u64, "{h:?}");
    let dest = at(&d, "dest.img");
    write(&dest, &with_junk(&v0));
    let st = at(&d, "st");
    Grown {
        d,
        v0,
        v1,
        delta,
        dest,
        st,
    }
}

/// The base image `v0` grown to the target's size, with random junk (no zero run) past it.
fn with_junk(v0: &Path) -> Vec<u8> {
    let mut img = std::fs::read(v0).unwrap();
    img.resize(GROWN, 0);
    Rng(0x99).fill(&mut img[BASE..]);
    img
}

/// The entries of the journal (or spare) in `st`, as `(offset, len)`.
fn journal_entries(st: &Path) -> Vec<(u64, u64)> {
    let path = std::fs::read_dir(st)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension()
                .is_some_and(|x| x == "journal" || x == "spare")
        })
        .expect("a journal or spare");
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut r = JournalReader::open(file).unwrap().expect("a journal head");
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        out.push(match e {
            UndoEntry::Data { offset, data } => (offset, data.len() as u64),
            UndoEntry::Zero { offset, len } => (offset, len),
        });
    }
    out
}

/// Assert the journal in `st` holds old bytes of the base part, and none past it.
fn assert_journal_capped(st: &Path) {
    let entries = journal_entries(st);
    assert!(!entries.is_empty(), "the base part's edits are journaled");
    let past: Vec<_> = entries
        .iter()
        .filter(|(o, l)| o + l > BASE as u64)
        .collect();
    assert!(past.is_empty(), "journaled past the base's size: {past:?}");
}

#[test]
fn received_grown_part_is_written_in_full_and_not_journaled() {
    let g = grown();
    let stream = std::fs::read(&g.delta).unwrap();
    ok(&receive(&stream, &g.dest, &g.st, &[]));
    assert_eq!(file_hash(&g.dest), file_hash(&g.v1));
    assert_journal_capped(&g.st);
}

#[test]
fn applied_grown_file_part_is_written_in_full_and_not_journaled() {
    let g = grown();
    ok(&apply(&g.delta, &g.dest, &g.st, &[]));
    assert_eq!(file_hash(&g.dest), file_hash(&g.v1));
    assert_journal_capped(&g.st);
}

/// A destination file that holds just the base, grown by the apply (`--grow`, `ftruncate`):
/// its new part is a hole, so the grown part's zero records allocate nothing there, through a
/// pipe (skipped: it reads zeroes) and a delta file (a hole punched into a hole).
#[test]
fn file_grown_by_the_apply_stays_sparse_where_the_target_is_zero() {
    use std::os::unix::fs::MetadataExt;
    let g = grown();
    let stream = std::fs::read(&g.delta).unwrap();
    for (how, dest) in [("receive", at(&g.d, "r.img")), ("apply", at(&g.d, "a.img"))] {
        std::fs::copy(&g.v0, &dest).unwrap();
        let out = match how {
            "receive" => receive(&stream, &dest, &g.st, &["--grow"]),
            _ => apply(&g.delta, &dest, &g.st, &["--grow"]),
        };
        ok(&out);
        assert_eq!(file_hash(&dest), file_hash(&g.v1), "{how}");
        // The base, and the 16 data runs of 64 KiB (with some slack each), not the 8 MiB.
        let allocated = std::fs::metadata(&dest).unwrap().blocks() * 512;
        let most = (BASE + 16 * (128 << 10)) as u64;
        assert!(
            allocated <= most,
            "{how}: {allocated} bytes allocated, at most {most}"
        );
    }
}

/// The same into a block device of the new size (an `lvextend`ed LV), whose size the apply
/// can't change and recovery never cuts.
#[test]
fn grown_block_device_part_is_written_in_full_and_not_journaled() {
    let Some(lo) = loop_support::LoopDevice::new((GROWN >> 20) as u64) else {
        return;
    };
    let g = grown();
    let mut dev = std::fs::OpenOptions::new()
        .write(true)
        .open(&lo.path)
        .unwrap();
    dev.write_all(&with_junk(&g.v0)).unwrap();
    dev.sync_all().unwrap();
    drop(dev);
    let stream = std::fs::read(&g.delta).unwrap();
    ok(&receive(&stream, &lo.path, &g.st, &[]));
    assert_eq!(lo.hash(), file_hash(&g.v1));
    assert_journal_capped(&g.st);
}

/// A state directory on a 7 MiB tmpfs holds the journal of the 4 MiB base part (at most
/// 5 MiB needed) but not of the whole 12 MiB: the apply fits, as the grown part's old bytes
/// are not journaled.
#[test]
fn journal_space_counts_the_base_part_only() {
    let g = grown();
    let small = at(&g.d, "small");
    let Some(_guard) = small_tmpfs(&small, "7m") else {
        return;
    };
    ok(&apply(&g.delta, &g.dest, &small, &[]));
    assert_eq!(file_hash(&g.dest), file_hash(&g.v1));
    // A full sync over the same destination journals all of it: refused there.
    let full = at(&g.d, "full.lvd");
    send_delta(None, &g.v1, &full);
    let o = apply(&full, &g.dest, &small, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("journal directory has"), "{err}");
}

/// A full sync (no base) over a grown destination, junk-filled throughout, journals every
/// old byte.
#[test]
fn full_sync_over_a_grown_destination_journals_everything() {
    let g = grown();
    let mut junk = vec![0u8; GROWN];
    Rng(0x98).fill(&mut junk);
    write(&g.dest, &junk);
    let full = at(&g.d, "full.lvd");
    send_delta(None, &g.v1, &full);
    let stream = std::fs::read(&full).unwrap();
    ok(&receive(&stream, &g.dest, &g.st, &[]));
    assert_eq!(file_hash(&g.dest), file_hash(&g.v1));
    assert_journal_whole_from(&g.st, 0);
}

/// Assert the journal in `st` holds every old byte of the grown destination from byte
/// `from` on, without a gap.
fn assert_journal_whole_from(st: &Path, from: u64) {
    let mut entries: Vec<_> = journal_entries(st)
        .into_iter()
        .filter(|(o, _)| *o >= from)
        .collect();
    entries.sort();
    let mut pos = from;
    for (o, l) in entries {
        assert_eq!(o, pos, "a gap in the journal past byte {from}");
        pos = o + l;
    }
    assert_eq!(pos, GROWN as u64);
}

/// A `--force`d apply journals every old byte it overwrites, past the base's size too: its
/// base was never checked, so those bytes may be a real state that recovery must restore.
#[test]
fn forced_apply_journals_everything() {
    let g = grown();
    let stream = std::fs::read(&g.delta).unwrap();
    ok(&receive(&stream, &g.dest, &g.st, &["--force"]));
    assert_eq!(file_hash(&g.dest), file_hash(&g.v1));
    // The grown part is touched in full (data and zero records over junk): all journaled.
    assert_journal_whole_from(&g.st, BASE as u64);
}

/// A resumed apply journals every old byte it overwrites (it can't tell whether the
/// interrupted apply was capped, and journaling more is always safe): the stream is cut in
/// the grown part; the interrupted part stays capped, the continuation journals the junk it
/// overwrites, and the result is the target.
#[test]
fn resumed_apply_journals_its_whole_rest() {
    let g = grown();
    let stream = send_checkpointed(&g.v0, &g.v1, None);
    let o = receive(
        &stream[..stream.len() * 3 / 4],
        &g.dest,
        &g.st,
        &["--resumable"],
    );
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let token = resume_token(&o);
    let cp = lvmsync::journal::resume::parse_token(&token).unwrap();
    // The continuation carries the grown part's last MiB at least (zeroes and data).
    assert!(
        (BASE as u64..GROWN as u64 - (1 << 20)).contains(&cp.resume_offset),
        "{cp:?}"
    );
    let rest = send_checkpointed(&g.v0, &g.v1, Some(&token));
    ok(&receive(&rest, &g.dest, &g.st, &["--resume"]));
    assert_eq!(file_hash(&g.dest), file_hash(&g.v1));
    let entries = journal_entries(&g.st);
    let before: Vec<_> = entries
        .iter()
        .filter(|(o, l)| o + l > BASE as u64 && *o < cp.resume_offset)
        .collect();
    assert!(
        before.is_empty(),
        "journaled past the base's size: {before:?}"
    );
    assert!(
        entries.iter().any(|(o, _)| *o >= cp.resume_offset),
        "the continuation journals what it overwrites: {entries:?}"
    );
}

/// `kill -9` the apply at a few points spread over it: after `recover` the destination's first
/// `BASE` bytes are exactly the base, or the whole destination is exactly the target.
#[test]
fn kill_9_then_recover_restores_the_base_part() {
    let g = grown();
    let junk = with_junk(&g.v0);
    let spawn = || {
        bin()
            .args(["apply", "--progress", "none"])
            .arg(&g.delta)
            .arg(&g.dest)
            .arg("--state-dir")
            .arg(&g.st)
            .test_hook("LVMSYNC_TEST_SLOW_MS", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let journal_exists = || {
        std::fs::read_dir(&g.st).is_ok_and(|mut d| {
            d.any(|e| {
                e.unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "journal")
            })
        })
    };
    let reset = || {
        write(&g.dest, &junk);
        let _ = std::fs::remove_dir_all(&g.st);
    };
    reset();
    let t = Instant::now();
    assert!(spawn().wait().unwrap().success());
    let full = t.elapsed().as_millis() as u64;
    let (v0, v1) = (std::fs::read(&g.v0).unwrap(), std::fs::read(&g.v1).unwrap());
    let (mut mid, mut base) = (0, 0);
    for i in 0..12u64 {
        reset();
        let mut child = spawn();
        while !journal_exists() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(full * i / 12));
        if child.try_wait().unwrap().is_none() {
            mid += 1;
        }
        child.kill().unwrap_or(()); // SIGKILL
        child.wait().unwrap();
        ok(&recover(&g.dest, &g.st));
        let now = std::fs::read(&g.dest).unwrap();
        assert_eq!(now.len(), GROWN, "kill #{i}: size");
        if now != v1 {
            assert!(
                now[..BASE] == v0[..],
                "kill #{i}: the base part is not the base"
            );
            base += 1;
        }
    }
    eprintln!("{mid} kills mid-apply, {base} rolled back");
    assert!(
        mid >= 4 && base >= 4,
        "{mid} kills mid-apply, {base} rolled back"
    );
}
