//! Recovery decisions on real journals written by the library's journal writer: a committed
//! journal rolls forward (state file written, destination untouched), an uncommitted one
//! rolls back byte-exactly (also cutting a grown file back), a torn head is discarded, and a
//! journal naming another destination is refused. Finished journals are kept as the
//! destination's spare and reused: frames an earlier apply left in the reused file are never
//! replayed, and the spare is cut back when it is much larger than an apply needs.

mod stream_util;
use lvmsync::journal::dest::Destination;
use lvmsync::journal::format::JournalHead;
use lvmsync::journal::format::JournalReader;
use lvmsync::journal::span::UndoSpan;
use lvmsync::journal::undo::{Incoming::Unknown, UndoJournal, SPARE_SLACK};
use lvmsync::journal::{recover, DestPaths, DestState, Recovery};
use lvmsync::stream::Fingerprint;
use stream_util::*;

fn head(paths: &DestPaths, size_before: u64) -> JournalHead {
    JournalHead {
        dest: paths.canonical.clone(),
        size_before,
        device_size: 1 << 20,
        base: Fingerprint([3; 32]),
        target: Fingerprint([4; 32]),
        created_unix: 1,
        source: "test".into(),
    }
}

/// Journaling every old byte of a destination of `size_before` bytes.
fn whole(size_before: u64) -> UndoSpan {
    UndoSpan {
        end: size_before,
        size_before,
    }
}

#[test]
fn committed_journal_rolls_forward() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    let mut img = vec![0u8; 1 << 20];
    Rng(5).fill(&mut img);
    write(&dest, &img);
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    let mut j =
        UndoJournal::create(&paths, &head(&paths, 1 << 20), whole(1 << 20), 1 << 20).unwrap();
    let dst = Destination::open(&dest, false).unwrap();
    j.save_old(&dst, 4096, 8192, Unknown).unwrap();
    j.sync().unwrap();
    j.commit(Fingerprint([4; 32])).unwrap();
    assert_eq!(recover(&paths, None).unwrap(), Recovery::RolledForward);
    let st = DestState::load(&paths.state).unwrap().unwrap();
    assert_eq!(st.fingerprint(), Some(Fingerprint([4; 32])));
    assert!(!paths.journal.exists());
    assert_eq!(std::fs::read(&dest).unwrap(), img);
}

#[test]
fn uncommitted_journal_rolls_back_and_cuts_growth() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    let mut img = vec![0u8; 1 << 20];
    Rng(6).fill(&mut img[..600_000]);
    write(&dest, &img);
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    let mut j =
        UndoJournal::create(&paths, &head(&paths, 1 << 20), whole(1 << 20), 1 << 20).unwrap();
    let dst = Destination::open(&dest, false).unwrap();
    dst.set_len(3 << 20).unwrap();
    // One range of data, one of old zeroes, one past the old end.
    for (off, len) in [(1000u64, 5000u64), (700_000, 200_000), (2 << 20, 4096)] {
        j.save_old(&dst, off, len, Unknown).unwrap();
    }
    j.sync().unwrap();
    dst.write_at(&vec![0xAA; 5000], 1000).unwrap();
    dst.write_at(&vec![0xBB; 200_000], 700_000).unwrap();
    dst.write_at(&[0xCC; 4096], 2 << 20).unwrap();
    drop(j);
    // The range past the old end needs no entry: recovery cuts the file back instead.
    assert_eq!(
        recover(&paths, None).unwrap(),
        Recovery::RolledBack { entries: 2 }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), img);
    assert!(!paths.journal.exists());
    assert_eq!(recover(&paths, None).unwrap(), Recovery::Nothing);
}

#[test]
fn torn_head_is_discarded_and_foreign_journal_refused() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    write(&dest, &[7u8; 4096]);
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    std::fs::write(&paths.journal, b"LVMSJRNL\x01\x00J\x10").unwrap();
    assert_eq!(recover(&paths, None).unwrap(), Recovery::Nothing);
    assert!(!paths.journal.exists());
    let other = DestPaths::new(&at(&d, "st"), &at(&d, "other.img")).unwrap();
    UndoJournal::create(&paths, &head(&other, 4096), whole(4096), 1 << 20).unwrap();
    let err = recover(&paths, None).unwrap_err().to_string();
    assert!(err.contains("journal belongs to"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), vec![7u8; 4096]);
}

#[test]
fn a_second_receiver_on_the_same_destination_is_refused() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    write(&dest, &[1u8; 4096]);
    let st = at(&d, "st");
    let paths = DestPaths::new(&st, &dest).unwrap();
    let held = paths.lock().unwrap();
    let o = stream_util::recover(&dest, &st);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("another lvmsync"));
    drop(held);
    ok(&stream_util::recover(&dest, &st));
}

/// Entries of the journal file at `path` and whether it ends with a valid commit.
fn read_journal(path: &std::path::Path) -> (u64, bool) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut r = JournalReader::open(file).unwrap().expect("a valid head");
    let mut n = 0;
    while r.next_entry().unwrap().is_some() {
        n += 1;
    }
    (n, r.committed)
}

#[test]
fn stale_frames_in_a_reused_journal_are_not_replayed() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    let mut old = vec![0u8; 4 << 20];
    Rng(21).fill(&mut old);
    write(&dest, &old);
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    let dst = Destination::open(&dest, false).unwrap();
    // Ranges whose frames (17 bytes + data) are whole 4 KiB blocks: a journal ending after
    // one of them has no zero padding, so the next frame a reader tries is the stale one.
    let piece = 65536 - 17;
    // Apply 1 journals eight ranges, writes them, commits; its journal becomes the spare.
    let mut j =
        UndoJournal::create(&paths, &head(&paths, 4 << 20), whole(4 << 20), 5 << 20).unwrap();
    for i in 0..8 {
        j.save_old(&dst, i * piece, piece, Unknown).unwrap();
    }
    j.sync().unwrap();
    let mut applied = vec![0u8; 4 << 20];
    Rng(22).fill(&mut applied);
    dst.write_at(&applied, 0).unwrap();
    j.commit(Fingerprint([4; 32])).unwrap();
    assert_eq!(recover(&paths, None).unwrap(), Recovery::RolledForward);
    assert!(!paths.journal.exists() && paths.spare.exists());
    // Apply 2 takes the spare, journals the same first range (its frame lands exactly where
    // apply 1's first frame was, followed by apply 1's other seven), writes, and crashes.
    let mut j =
        UndoJournal::create(&paths, &head(&paths, 4 << 20), whole(4 << 20), 5 << 20).unwrap();
    j.save_old(&dst, 0, piece, Unknown).unwrap();
    j.sync().unwrap();
    dst.write_at(&vec![0xEE; piece as usize], 0).unwrap();
    drop(j);
    assert!(!paths.spare.exists());
    assert_eq!(read_journal(&paths.journal), (1, false));
    assert_eq!(
        recover(&paths, None).unwrap(),
        Recovery::RolledBack { entries: 1 }
    );
    // Replaying apply 1's stale frames would have put `old` back over ranges 1-7.
    assert_eq!(std::fs::read(&dest).unwrap(), applied);
}

#[test]
fn holes_are_journaled_as_zeroes() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    let f = std::fs::File::create(&dest).unwrap();
    f.set_len(4 << 20).unwrap();
    let mut data = vec![0u8; 1 << 20];
    Rng(23).fill(&mut data);
    std::os::unix::fs::FileExt::write_all_at(&f, &data, 2 << 20).unwrap();
    let before = std::fs::read(&dest).unwrap();
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    let dst = Destination::open(&dest, false).unwrap();
    let mut j =
        UndoJournal::create(&paths, &head(&paths, 4 << 20), whole(4 << 20), 5 << 20).unwrap();
    j.save_old(&dst, 0, 4 << 20, Unknown).unwrap();
    j.sync().unwrap();
    let mut new = vec![0u8; 4 << 20];
    Rng(24).fill(&mut new);
    dst.write_at(&new, 0).unwrap();
    drop(j);
    assert_eq!(
        recover(&paths, None).unwrap(),
        Recovery::RolledBack { entries: 4 }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), before);
}

/// The holes of a destination file grown and written through the handle an apply holds
/// (its kind is known from the open, its size and holes are asked afresh): the grown part is
/// a hole until written, and data written there is journaled as data, so rolling back
/// restores it byte-exactly.
#[test]
fn holes_of_a_destination_grown_and_written_after_open_are_journaled_exactly() {
    const MIB: u64 = 1 << 20;
    let d = tmp();
    let dest = at(&d, "dest.img");
    let mut data = vec![0u8; MIB as usize];
    Rng(25).fill(&mut data);
    write(&dest, &data); // 1 MiB of data, then grown below
    let dst = Destination::open(&dest, false).unwrap();
    dst.set_len(4 * MIB).unwrap();
    assert!(
        dst.holes().is_hole(MIB, 4 * MIB),
        "the grown part is a hole"
    );
    dst.write_at(&data[..MIB as usize / 2], 3 * MIB).unwrap();
    let mut holes = dst.holes();
    assert!(!holes.is_hole(0, MIB));
    assert!(holes.is_hole(MIB, 3 * MIB));
    assert!(
        !holes.is_hole(3 * MIB, 3 * MIB + 4096),
        "written after the grow: data"
    );
    let before = std::fs::read(&dest).unwrap();
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    let mut j =
        UndoJournal::create(&paths, &head(&paths, 4 * MIB), whole(4 * MIB), 5 * MIB).unwrap();
    let mut new = vec![0u8; MIB as usize];
    for (i, at) in (0..4 * MIB).step_by(MIB as usize).enumerate() {
        j.save_old(&dst, at, MIB, Unknown).unwrap();
        j.sync().unwrap();
        Rng(26 + i as u64).fill(&mut new);
        dst.write_at(&new, at).unwrap();
    }
    drop(j);
    assert_eq!(
        recover(&paths, None).unwrap(),
        Recovery::RolledBack { entries: 4 }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), before);
}

#[test]
fn a_spare_much_larger_than_needed_is_cut_back() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    write(&dest, &[9u8; 4096]);
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    let cycle = |need: u64| {
        let j = UndoJournal::create(&paths, &head(&paths, 4096), whole(4096), need).unwrap();
        let len = std::fs::metadata(&paths.journal).unwrap().len();
        j.commit(Fingerprint([4; 32])).unwrap();
        assert_eq!(recover(&paths, None).unwrap(), Recovery::RolledForward);
        len
    };
    assert_eq!(cycle(1 << 20), 1 << 20, "preallocated to the need");
    let grow = |len: u64| {
        let spare = std::fs::OpenOptions::new().write(true).open(&paths.spare);
        spare.unwrap().set_len(len).unwrap();
    };
    // Within twice the need plus the slack: reused as it is.
    grow(8 << 20);
    assert_eq!(cycle(1 << 20), 8 << 20);
    // Far larger: cut back to the need.
    grow(2 * (1 << 20) + SPARE_SLACK + 4096);
    assert_eq!(cycle(1 << 20), 1 << 20);
}

#[test]
fn receive_of_what_the_destination_holds_writes_nothing_and_drop_spare_frees_it() {
    let d = tmp();
    let (src, dest, st) = (at(&d, "src.img"), at(&d, "dest.img"), at(&d, "st"));
    write(&src, &make_image(3 << 20, 25));
    let full = at(&d, "full.lvd");
    send_delta(None, &src, &full);
    ok(&apply(&full, &dest, &st, &[]));
    assert_eq!(file_hash(&dest), file_hash(&src));
    let paths = DestPaths::new(&st, &dest).unwrap();
    assert!(paths.spare.exists() && !paths.journal.exists());
    let mtime = || std::fs::metadata(&dest).unwrap().modified().unwrap();
    let before = mtime();
    std::thread::sleep(std::time::Duration::from_millis(20));
    ok(&receive(&std::fs::read(&full).unwrap(), &dest, &st, &[]));
    assert_eq!(file_hash(&dest), file_hash(&src));
    assert_eq!(mtime(), before, "identical bytes were written again");
    assert_eq!(read_journal(&paths.spare), (0, true), "no undo entries");
    let o = bin()
        .arg("recover")
        .arg(&dest)
        .arg("--state-dir")
        .arg(&st)
        .arg("--drop-spare")
        .output()
        .unwrap();
    ok(&o);
    assert!(!paths.spare.exists() && !paths.journal.exists());
}

#[test]
fn an_apply_that_cannot_open_its_destination_leaves_no_journal() {
    let d = tmp();
    let (src, st, full) = (at(&d, "src.img"), at(&d, "st"), at(&d, "full.lvd"));
    write(&src, &make_image(1 << 20, 26));
    send_delta(None, &src, &full);
    // A link into a missing directory: the apply gets as far as creating the destination
    // (after its journal head is durable), which fails.
    let (link, target) = (at(&d, "dest.img"), at(&d, "missing/dest.img"));
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = apply(&full, &link, &st, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("dest.img: No such file"),
        "{err}"
    );
    let paths = DestPaths::new(&st, &link).unwrap();
    assert!(!paths.journal.exists(), "a head-only journal was left");
    // Once the cause is fixed, the next apply finds nothing to recover and succeeds.
    std::fs::create_dir(at(&d, "missing")).unwrap();
    ok(&apply(&full, &link, &st, &[]));
    assert_eq!(file_hash(&target), file_hash(&src));
}
