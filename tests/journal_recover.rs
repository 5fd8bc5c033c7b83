//! Recovery decisions on real journals written by the library's journal writer: a committed
//! journal rolls forward (state file written, destination untouched), an uncommitted one
//! rolls back byte-exactly (also cutting a grown file back), a torn head is discarded, and a
//! journal naming another destination is refused.

mod stream_util;
use lvmsync::journal::dest::Destination;
use lvmsync::journal::format::JournalHead;
use lvmsync::journal::undo::UndoJournal;
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

#[test]
fn committed_journal_rolls_forward() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    let mut img = vec![0u8; 1 << 20];
    Rng(5).fill(&mut img);
    write(&dest, &img);
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    let mut j = UndoJournal::create(&paths.journal, &head(&paths, 1 << 20)).unwrap();
    let dst = Destination::open(&dest, false).unwrap();
    j.save_old(&dst, 4096, 8192).unwrap();
    j.sync().unwrap();
    j.commit(Fingerprint([4; 32])).unwrap();
    assert_eq!(recover(&paths).unwrap(), Recovery::RolledForward);
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
    let mut j = UndoJournal::create(&paths.journal, &head(&paths, 1 << 20)).unwrap();
    let dst = Destination::open(&dest, false).unwrap();
    dst.set_len(3 << 20).unwrap();
    // One range of data, one of old zeroes, one past the old end.
    for (off, len) in [(1000u64, 5000u64), (700_000, 200_000), (2 << 20, 4096)] {
        j.save_old(&dst, off, len).unwrap();
    }
    j.sync().unwrap();
    dst.write_at(&vec![0xAA; 5000], 1000).unwrap();
    dst.write_at(&vec![0xBB; 200_000], 700_000).unwrap();
    dst.write_at(&[0xCC; 4096], 2 << 20).unwrap();
    drop(j);
    // The range past the old end needs no entry: recovery cuts the file back instead.
    assert_eq!(
        recover(&paths).unwrap(),
        Recovery::RolledBack { entries: 2 }
    );
    assert_eq!(std::fs::read(&dest).unwrap(), img);
    assert!(!paths.journal.exists());
    assert_eq!(recover(&paths).unwrap(), Recovery::Nothing);
}

#[test]
fn torn_head_is_discarded_and_foreign_journal_refused() {
    let d = tmp();
    let dest = at(&d, "dest.img");
    write(&dest, &[7u8; 4096]);
    let paths = DestPaths::new(&at(&d, "st"), &dest).unwrap();
    std::fs::write(&paths.journal, b"LVMSJRNL\x01\x00J\x10").unwrap();
    assert_eq!(recover(&paths).unwrap(), Recovery::Nothing);
    assert!(!paths.journal.exists());
    let other = DestPaths::new(&at(&d, "st"), &at(&d, "other.img")).unwrap();
    UndoJournal::create(&paths.journal, &head(&other, 4096)).unwrap();
    let err = recover(&paths).unwrap_err().to_string();
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
