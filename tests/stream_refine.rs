//! Sub-block refinement through the real send pipeline and the real journaled receiver, on
//! image files standing in for two snapshots (the guest test `stream_lv` does it on LVM thin
//! snapshots): a 64 KiB changed extent with one 4 KiB unit different becomes exactly one
//! 4 KiB data record, an equal extent nothing; the refined stream applied onto a copy of the
//! base gives the new image; a cut, resumable receive continues from its checkpoint with a
//! refined continuation stream, and a continuation planned without refinement is refused
//! before it writes anything; `added` extents are compared with the base's bytes (an external
//! origin's), and kept past the base's end (a grown destination).

use lvmsync::journal::resume::resume_point;
use lvmsync::journal::{apply_stream, ApplyOptions, ApplyReport, DestPaths};
use lvmsync::stream::fingerprint::content_fingerprint;
use lvmsync::stream::refine::refine;
use lvmsync::stream::{send_changes, EncodeOptions, Header, Item, StreamReader};
use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, Extent, ExtentKind};
use std::path::{Path, PathBuf};
use stream_util::Rng;

mod stream_util;

const K64: u64 = 65536;
const SIZE: u64 = 4 << 20;

/// `n` random bytes from seed `seed` (incompressible).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    Rng(seed | 1).fill(&mut buf);
    buf
}

struct Pair {
    dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
}

impl Pair {
    fn new(old: &[u8], new: &[u8]) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let (o, n) = (dir.path().join("old.img"), dir.path().join("new.img"));
        std::fs::write(&o, old).unwrap();
        std::fs::write(&n, new).unwrap();
        Pair {
            dir,
            old: o,
            new: n,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A delta header from `old` to `new` by content fingerprints, touching `changes`.
    fn header(&self, changes: &ChangeSet) -> Header {
        let len = |p: &Path| Bytes(std::fs::metadata(p).unwrap().len());
        let (base_size, size) = (len(&self.old), len(&self.new));
        Header {
            source: "new.img".into(),
            source_uuid: String::new(),
            device_size: size,
            base_size,
            block_size: Bytes(K64),
            base: content_fingerprint(&self.old, base_size).unwrap(),
            target: content_fingerprint(&self.new, size).unwrap(),
            created_unix: 1,
            touched_bytes: changes.changed_bytes(),
        }
    }

    /// The stream of `changes` refined against the old image, and whether progress ended
    /// at 100% of the refined bytes left to send (or was never reported: nothing to send).
    fn send(&self, changes: &ChangeSet, opts: EncodeOptions) -> (Vec<u8>, bool) {
        let refined = refine(changes, &self.new, &self.old, 2).unwrap().changes;
        let header = self.header(&refined);
        let mut last = None;
        let (out, _) = send_changes(
            &self.new,
            &refined,
            &header,
            Vec::new(),
            "t",
            opts,
            &mut |d, t| last = Some((d, t)),
        )
        .unwrap();
        let total = refined.changed_bytes().0;
        (out, last.map_or(total == 0, |(d, t)| d == t && t <= total))
    }

    /// A copy of the old image to apply onto.
    fn dest(&self) -> PathBuf {
        let d = self.path("dest.img");
        std::fs::copy(&self.old, &d).unwrap();
        d
    }

    /// Apply `stream` to `dest` through the journaled receiver (state under this pair's dir).
    fn apply(&self, stream: &[u8], dest: &Path) -> ApplyReport {
        apply_stream(
            stream,
            "t",
            dest,
            &ApplyOptions::new(self.path("st")),
            &mut |_, _| {},
        )
        .unwrap()
    }
}

fn items(stream: &[u8]) -> Vec<Item> {
    let mut r = StreamReader::open(stream, "t").unwrap();
    let mut got = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if !matches!(item, Item::Checkpoint(_)) {
            got.push(item);
        }
    }
    got
}

#[test]
fn one_changed_unit_is_one_record_and_the_apply_is_exact() {
    let old = noise(1, SIZE as usize);
    let mut new = old.clone();
    new[K64 as usize + 3 * 4096 + 17] ^= 0x80; // block 1, unit 3
    let pair = Pair::new(&old, &new);
    let changes = ChangeSet::from_extents(
        Bytes(K64),
        [
            Extent::new(K64, K64, ExtentKind::Changed),
            Extent::new(4 * K64, K64, ExtentKind::Changed), // metadata says changed, bytes equal
        ],
    )
    .unwrap();
    let (stream, full_progress) = pair.send(&changes, EncodeOptions::default());
    assert!(full_progress, "progress must end at its total");
    let unit = new[(K64 + 3 * 4096) as usize..(K64 + 4 * 4096) as usize].to_vec();
    assert_eq!(
        items(&stream),
        vec![Item::Data {
            offset: K64 + 3 * 4096,
            data: unit
        }]
    );
    // The same change set unrefined carries both whole blocks.
    let header = pair.header(&changes);
    let whole = send_changes(
        &pair.new,
        &changes,
        &header,
        Vec::new(),
        "t",
        EncodeOptions::default(),
        &mut |_, _| {},
    )
    .unwrap()
    .1;
    assert_eq!(whole.data_bytes, 2 * K64);

    let dest = pair.dest();
    let report = pair.apply(&stream, &dest);
    assert_eq!(report.data_bytes, 4096);
    assert_eq!(std::fs::read(&dest).unwrap(), new);
}

#[test]
fn an_all_equal_change_set_gives_an_empty_stream() {
    let old = noise(2, SIZE as usize);
    let pair = Pair::new(&old, &old);
    let changes =
        ChangeSet::from_extents(Bytes(K64), [Extent::new(0, 8 * K64, ExtentKind::Changed)])
            .unwrap();
    let (stream, full_progress) = pair.send(&changes, EncodeOptions::default());
    assert!(items(&stream).is_empty());
    assert!(full_progress);
}

/// Many scattered units in many blocks, checkpoints every 64 KiB of stream: a receive cut
/// in the middle keeps its verified part, the refined continuation finishes it exactly.
#[test]
fn a_cut_refined_stream_resumes_from_its_checkpoint() {
    let old = noise(3, SIZE as usize);
    let mut new = old.clone();
    let (mut extents, mut blocks) = (Vec::new(), 0);
    for b in 0..SIZE / K64 {
        if b % 3 == 2 {
            continue;
        }
        blocks += 1;
        extents.push(Extent::new(b * K64, K64, ExtentKind::Changed));
        let unit = (b * 7 % 16) * 4096;
        let at = (b * K64 + unit) as usize;
        new[at..at + 4096].copy_from_slice(&noise(100 + b, 4096));
    }
    let pair = Pair::new(&old, &new);
    let changes = ChangeSet::from_extents(Bytes(K64), extents).unwrap();
    let opts = || EncodeOptions {
        checkpoint_every: Some(K64),
        ..EncodeOptions::default()
    };
    let (stream, _) = pair.send(&changes, opts());
    let n_data = items(&stream).len();
    assert_eq!(n_data, blocks, "one 4 KiB record per changed block");
    assert!(
        stream.len() < n_data * (4096 + 200),
        "{} stream bytes",
        stream.len()
    );

    let (dest, state) = (pair.dest(), pair.path("st"));
    let cut = &stream[..stream.len() / 2];
    let resumable = ApplyOptions {
        resumable: true,
        ..ApplyOptions::new(&state)
    };
    apply_stream(cut, "t", &dest, &resumable, &mut |_, _| {}).unwrap_err();
    let paths = DestPaths::new(&state, &dest).unwrap();
    let cp = resume_point(&paths).unwrap().expect("a kept checkpoint");
    assert!(cp.resume_offset > 0);
    let acked = cp.totals.stream_bytes;
    // A continuation planned without refinement (`--no-refine`, or a base no longer
    // read-only) is refused before anything is written: its changes cover more bytes before
    // the resume offset than the interrupted stream's records did.
    let mut out = Vec::new();
    let err = send_changes(
        &pair.new,
        &changes,
        &pair.header(&changes),
        &mut out,
        "t",
        EncodeOptions {
            resume: Some(cp),
            ..opts()
        },
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("planned differently"), "{err}");
    assert!(out.is_empty(), "{} bytes written", out.len());
    let (rest, full_progress) = pair.send(
        &changes,
        EncodeOptions {
            resume: Some(cp),
            ..opts()
        },
    );
    assert!(full_progress);
    // Nothing before the checkpoint is sent again.
    assert!(
        rest.len() as u64 <= stream.len() as u64 - acked + 1024,
        "continuation {} bytes, stream {} bytes, {acked} acknowledged",
        rest.len(),
        stream.len()
    );
    let resume = ApplyOptions {
        resume: true,
        ..ApplyOptions::new(&state)
    };
    apply_stream(&rest[..], "t", &dest, &resume, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), new);
}

/// A thin base with an external origin reads that origin's bytes where it is unmapped (here:
/// the old image's noise under an `added` block), and the destination holds them: the unit the
/// newer snapshot zeroed is sent (as a zero record), the written one as data, the equal ones
/// not at all; the apply gives the new image.
#[test]
fn added_blocks_over_an_external_origin_keep_the_units_that_differ_from_it() {
    let old = noise(4, SIZE as usize);
    let mut new = old.clone();
    let block = 5 * K64 as usize;
    new[block + 2 * 4096..block + 3 * 4096].fill(0);
    new[block + 7 * 4096 + 9] ^= 0x11;
    let pair = Pair::new(&old, &new);
    let changes =
        ChangeSet::from_extents(Bytes(K64), [Extent::new(5 * K64, K64, ExtentKind::Added)])
            .unwrap();
    let (stream, _) = pair.send(&changes, EncodeOptions::default());
    let at = (block + 7 * 4096) as u64;
    assert_eq!(
        items(&stream),
        vec![
            Item::Zero {
                offset: (block + 2 * 4096) as u64,
                len: 4096
            },
            Item::Data {
                offset: at,
                data: new[at as usize..at as usize + 4096].to_vec()
            }
        ]
    );
    let dest = pair.dest();
    pair.apply(&stream, &dest);
    assert_eq!(std::fs::read(&dest).unwrap(), new);
}

/// The source grew since the base: the destination was grown beforehand (as `lvextend`
/// does: whatever bytes were on the disk, here noise), and the added blocks past the base's
/// end are sent whole, their zero units as zero records, so the apply gives the new image.
#[test]
fn added_zero_units_past_the_bases_end_are_sent() {
    let old = noise(5, SIZE as usize / 2);
    let mut new = old.clone();
    new.resize(SIZE as usize, 0); // grown; one unit of the new part written
    let at = SIZE as usize / 2 + K64 as usize + 4096;
    new[at..at + 4096].copy_from_slice(&noise(6, 4096));
    let pair = Pair::new(&old, &new);
    let grown = Extent::new(SIZE / 2, SIZE / 2, ExtentKind::Added);
    let changes = ChangeSet::from_extents(Bytes(K64), [grown]).unwrap();
    let (stream, _) = pair.send(&changes, EncodeOptions::default());
    let dest = pair.dest();
    let mut stale = old.clone();
    stale.extend(noise(7, SIZE as usize / 2)); // what the grown LV held there
    std::fs::write(&dest, &stale).unwrap();
    pair.apply(&stream, &dest);
    assert_eq!(std::fs::read(&dest).unwrap(), new);
}
