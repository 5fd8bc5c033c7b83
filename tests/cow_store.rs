//! Reading well-formed exception stores written by the test-side kernel-allocator writer:
//! several chunk sizes, many areas, empty, exactly-full area, straddling chunks, through the
//! library (file and bytes) and through `lvmsync diff --cow-store` (text and JSON).

mod cow_support;

use cow_support::{shuffled_chunks, StoreSpec};
use lvmsync::cow::{changes_from_bytes, changes_from_file, read_store, StoreSource};
use lvmsync::{ChangeSet, ExtentKind};
use std::process::Command;

fn runs(cs: &ChangeSet) -> Vec<(u64, u64)> {
    assert!(cs.extents().iter().all(|e| e.kind == ExtentKind::Changed));
    cs.extents()
        .iter()
        .map(|e| (e.offset.0, e.length.0))
        .collect()
}

/// Check a store through bytes and through a file, against the writer's ground truth.
/// (In memory only when the store, data chunks included, is small.)
fn check(spec: &StoreSpec) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cow.img");
    spec.write_sparse(&path);
    let from_file = changes_from_file(&path).unwrap();
    assert_eq!(runs(&from_file), spec.expected_runs());
    assert_eq!(from_file.block_size().0, spec.chunk_bytes());
    if spec.layout().1 <= 64 << 20 {
        let from_bytes = changes_from_bytes(&spec.to_bytes(), "mem").unwrap();
        assert_eq!(from_bytes, from_file);
    }
}

#[test]
fn chunk_sizes_and_area_counts() {
    for chunk_sectors in [1u32, 8, 16, 128, 1024, 4096] {
        let e = u64::from(chunk_sectors) * 512 / 16;
        for n in [0, 1, e - 1, e, e + 1, 3 * e + 7] {
            if n > 100_000 {
                continue;
            }
            let spread = 1 + n % 3;
            let spec = StoreSpec::new(chunk_sectors, shuffled_chunks(n, n + 17, spread));
            check(&spec);
        }
    }
}

#[test]
fn many_areas_small_chunks() {
    // 512 B chunks: 32 records per area, so 4000 exceptions fill 125 areas exactly.
    let spec = StoreSpec::new(1, shuffled_chunks(4000, 99, 2));
    assert_eq!(spec.records().len() as u64 % spec.per_area(), 0);
    check(&spec);
    let spec = StoreSpec::new(1, shuffled_chunks(4001, 5, 1));
    check(&spec);
}

#[test]
fn read_ahead_across_buffers_and_pieces() {
    // 512 B chunks: 1,250 areas, read ahead 128 areas to a buffer by several threads.
    check(&StoreSpec::new(1, shuffled_chunks(40_000, 7, 3)));
    // 2 MiB chunks: an area is read in two 1 MiB pieces; the list ends in the second.
    let spec = StoreSpec::new(4096, shuffled_chunks(70_000, 11, 1));
    assert!(spec.records().len() as u64 > (1 << 20) / 16);
    check(&spec);
}

#[test]
fn empty_store_has_no_changes() {
    let cs = changes_from_bytes(&StoreSpec::new(8, vec![]).to_bytes(), "mem").unwrap();
    assert!(cs.is_empty());
    assert_eq!(cs.block_size().0, 4096);
}

#[test]
fn exactly_full_area_then_empty_area() {
    let spec = StoreSpec::new(8, (0..256).map(|c| c * 2).collect());
    let (writes, _) = spec.layout();
    assert_eq!(writes.len(), 3, "header, full area 0, zeroed area 1");
    check(&spec);
}

#[test]
fn straddling_chunks_merge() {
    // A write across the boundary of origin chunks 100 and 101 copies both.
    let spec = StoreSpec::new(8, vec![101, 7, 100]);
    let cs = changes_from_bytes(&spec.to_bytes(), "mem").unwrap();
    assert_eq!(runs(&cs), vec![(7 * 4096, 4096), (100 * 4096, 2 * 4096)]);
}

#[test]
fn records_after_the_end_marker_are_ignored() {
    let spec = StoreSpec::new(8, vec![1, 2, 3]);
    let mut bytes = spec.to_bytes();
    // Stale record after the zero terminator in area 0 (slot 4): the kernel ignores it.
    let at = 4096 + 4 * 16;
    bytes[at..at + 8].copy_from_slice(&55u64.to_le_bytes());
    bytes[at + 8..at + 16].copy_from_slice(&9u64.to_le_bytes());
    let cs = changes_from_bytes(&bytes, "mem").unwrap();
    assert_eq!(runs(&cs), spec.expected_runs());
}

/// A live store: the current area gains records between reads, `settle_after` reads of it.
struct Appending {
    before: Vec<u8>,
    after: Vec<u8>,
    area_offset: u64,
    area_reads: u32,
    settle_after: u32,
}

impl StoreSource for Appending {
    fn store_len(&self) -> u64 {
        self.before.len() as u64
    }
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if offset == self.area_offset {
            self.area_reads += 1;
        }
        // Alternate old/new until settled, then stay on the new image.
        let settled = self.area_reads > self.settle_after;
        let img = if settled || self.area_reads % 2 == 0 {
            &self.after
        } else {
            &self.before
        };
        let o = offset as usize;
        buf.copy_from_slice(&img[o..o + buf.len()]);
        Ok(())
    }
}

#[test]
fn live_current_area_is_reread_until_stable() {
    let mut before = StoreSpec::new(8, vec![10, 11, 12]);
    let mut after = before.clone();
    after.old_chunks.extend([40, 41]);
    before.free_chunks += 2;
    let (before, after) = (before.to_bytes(), after.to_bytes());
    assert_eq!(before.len(), after.len());
    let expect = cow_support::expected_runs(&[10, 11, 12, 40, 41], 4096);
    let mut src = Appending {
        before,
        after,
        area_offset: 4096,
        area_reads: 0,
        settle_after: 4,
    };
    let cs = read_store(&mut src, "live").unwrap();
    assert_eq!(runs(&cs), expect);
    assert!(src.area_reads >= 5, "kept reading: {}", src.area_reads);

    // A store that never settles is refused, naming it, after a bounded number of reads.
    src.area_reads = 0;
    src.settle_after = u32::MAX;
    let err = read_store(&mut src, "busy-cow").unwrap_err().to_string();
    assert!(
        err.contains("busy-cow") && err.contains("changed on each"),
        "{err}"
    );
}

/// A live store read ahead: its read-ahead reader saw the store as it was a moment ago
/// (`ahead`), the walk's own re-reads see it now (`now`).
struct ReadAheadLive {
    img: std::sync::Arc<Vec<u8>>,
    ahead: Option<std::sync::Arc<Vec<u8>>>,
}

impl StoreSource for ReadAheadLive {
    fn store_len(&self) -> u64 {
        self.img.len() as u64
    }
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self.img[o..o + buf.len()]);
        Ok(())
    }
    fn read_ahead(&self) -> std::io::Result<Vec<Self>> {
        Ok(self
            .ahead
            .iter()
            .map(|img| ReadAheadLive {
                img: img.clone(),
                ahead: None,
            })
            .collect())
    }
}

#[test]
fn areas_after_a_reread_area_are_read_fresh_not_from_read_ahead() {
    // Now: areas 0 and 1 full (512 exceptions), area 2 zeroed by the kernel.
    // Read ahead a moment earlier: area 1 held 10 records, and area 2 still held a full area
    // of an older store on the same disk space (exceptions 90,512..90,768).
    let older = StoreSpec::new(8, (90_000..90_768).collect()).to_bytes();
    let mut now = StoreSpec::new(8, (0..512).collect()).to_bytes();
    now.resize(older.len(), 0);
    let area = |k: u64| {
        let at = (1 + k * 257) as usize * 4096;
        at..at + 4096
    };
    let mut ahead = older;
    ahead[area(0)].copy_from_slice(&now[area(0)]);
    ahead[area(1)].fill(0);
    ahead[area(1)][..10 * 16].copy_from_slice(&now[area(1)][..10 * 16]);
    let mut src = ReadAheadLive {
        img: std::sync::Arc::new(now),
        ahead: Some(std::sync::Arc::new(ahead)),
    };
    let cs = read_store(&mut src, "live-cow").unwrap();
    let all: Vec<u64> = (0..512).collect();
    assert_eq!(runs(&cs), cow_support::expected_runs(&all, 4096));
}

fn lvmsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lvmsync"))
}

#[test]
fn cli_text_and_json_match_ground_truth() {
    let spec = StoreSpec::new(
        16,
        shuffled_chunks(700, 3, 1)
            .into_iter()
            .map(|c| c * 3 / 2)
            .collect(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap-cow.img");
    spec.write_sparse(&path);
    let expect = spec.expected_runs();

    let out = lvmsync()
        .args(["diff", "--cow-store"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (summary, body) = lines.split_last().unwrap();
    let got: Vec<(u64, u64)> = body
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f[2], "changed");
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(got, expect);
    let total: u64 = expect.iter().map(|r| r.1).sum();
    assert!(
        summary.contains(&format!("{} extents, {total} bytes", expect.len())),
        "{summary}"
    );

    let out = lvmsync()
        .args(["diff", "--json", "--cow-store"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["block_size"], 8192);
    assert_eq!(v["changed_bytes"], total);
    assert_eq!(v["extents_count"], expect.len());
    let got: Vec<(u64, u64)> = v["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, expect);
}
