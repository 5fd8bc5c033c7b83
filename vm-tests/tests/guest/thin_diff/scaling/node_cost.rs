//! Where one node's time goes when lvmsync diffs the kernel-made 1,000,000-block metadata in
//! the guest (a measurement, not run by default; docs/performance.md "Per-node cost in the
//! guest"). Under TCG the guest CPU is 10-50× slower than native while its I/O is memory
//! copies, so the split between checksum, decode, walk and reads differs from the host's.
//!
//! For a pair of devices it records the nodes one diff reads, in order, then times on exactly
//! those nodes: the two CRC-32C implementations, the node decode (checksum and checks), the
//! whole diff on the nodes held in memory (no I/O), reading the nodes (buffered cold and warm,
//! `O_DIRECT`), and the whole diff through each kind of source (with its read-ahead workers).

use super::best_of;
use super::kernel_meta::loop_copy;
#[path = "../../../../../tests/thin_support/recording.rs"]
mod recording;
use lvmsync::thin::checksum::{crc32c_crate, crc32c_table};
use lvmsync::thin::diff::diff_devices;
use lvmsync::thin::node::NodeHeader;
use lvmsync::thin::source::{Block, METADATA_BLOCK_SIZE};
use lvmsync::thin::{FileSource, MetadataSource, Superblock};
use recording::Recording;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

/// The recorded nodes (plus the superblock), held in memory.
struct Held {
    nr_blocks: u64,
    blocks: HashMap<u64, Box<Block>>,
}

impl MetadataSource for Held {
    fn name(&self) -> &str {
        "held nodes"
    }
    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }
    fn read_block(&self, n: u64, buf: &mut Block) -> lvmsync::Result<()> {
        buf.copy_from_slice(&self.blocks[&n][..]);
        Ok(())
    }
}

fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (root in the guest)");
}

/// Read `order` one block at a time with `pread` from `file` (aligned buffer, so the same code
/// serves `O_DIRECT`).
fn read_all(file: &File, order: &[u64]) {
    #[repr(C, align(4096))]
    struct Aligned([u8; METADATA_BLOCK_SIZE]);
    let mut buf = Box::new(Aligned([0; METADATA_BLOCK_SIZE]));
    for &n in order {
        file.read_exact_at(&mut buf.0, n * METADATA_BLOCK_SIZE as u64)
            .unwrap();
    }
}

/// `O_DIRECT` on x86_64 Linux (the guest's architecture).
const O_DIRECT: i32 = 0o40000;

/// Per-node costs for device 1 against devices 4 (1% clustered) and 7 (1% scattered) of the
/// generated metadata (`$LVMSYNC_BENCH_META`), printed as a table in µs per node read. Run
/// (docs/performance.md): `vm-tests/run --mem 3G --rw DIR -- env
/// LVMSYNC_BENCH_META=DIR/thin-kernel-1M.meta target/release/deps/guest-<hash> --ignored
/// --nocapture --test-threads=1 thin_diff::scaling::node_cost`.
#[test]
#[ignore = "measurement; needs the generated metadata (see docs/performance.md)"]
fn node_cost() {
    lvmsync_vm_tests::require_guest();
    let copy = loop_copy();
    let path = Path::new(&copy.path);
    println!(
        "\n| pair | nodes | crc32c crate (SSE4.2) | crc32c table | decode | diff, nodes in memory | \
         read cold buffered | read warm buffered | read O_DIRECT | diff cold buffered | \
         diff warm buffered | diff O_DIRECT (16 read-ahead workers) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (new, what) in [(4, "1 → 4 (1% clustered)"), (7, "1 → 7 (1% scattered)")] {
        let file = FileSource::open(path).unwrap();
        let rec = Recording::new(&file);
        let sb = Superblock::read(&rec, 0).unwrap();
        rec.clear();
        let (want, stats) = diff_devices(&rec, &sb, Some(1), new).unwrap();
        let read = rec.into_reads();
        let order: Vec<u64> = read.iter().map(|(n, _)| *n).collect();
        let nodes = order.len() as f64;
        let mut held = Held {
            nr_blocks: file.nr_blocks(),
            blocks: read.into_iter().collect(),
        };
        let mut sb_block = Box::new([0u8; METADATA_BLOCK_SIZE]);
        file.read_block(0, &mut sb_block).unwrap();
        held.blocks.insert(0, sb_block);
        // Per node read, counting the few nodes of the top-level and details lookups too.
        let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / nodes);
        let crc = |f: fn(&[u8]) -> u32| {
            best_of(3, || {
                held.blocks
                    .values()
                    .fold(0u32, |acc, b| acc ^ f(std::hint::black_box(&b[4..])))
            })
            .0
        };
        let (t_crate, t_table) = (crc(crc32c_crate), crc(crc32c_table));
        let (t_decode, _) = best_of(3, || {
            for (n, b) in &held.blocks {
                if *n != 0 {
                    let _ = std::hint::black_box(NodeHeader::decode(b, *n, 8));
                }
            }
        });
        let (t_mem, (got, _)) = best_of(3, || {
            let sb = Superblock::read(&held, 0).unwrap();
            diff_devices(&held, &sb, Some(1), new).unwrap()
        });
        assert_eq!(got, want, "diff of held nodes vs diff of the device");
        drop_caches();
        let f = File::open(path).unwrap();
        let (t_cold, _) = best_of(1, || read_all(&f, &order));
        let (t_warm, _) = best_of(3, || read_all(&f, &order));
        drop(f);
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_DIRECT)
            .open(path)
            .unwrap();
        let (t_direct, _) = best_of(3, || read_all(&direct, &order));
        let diff_through = |src: &FileSource| {
            let sb = Superblock::read(src, 0).unwrap();
            let (got, _) = diff_devices(src, &sb, Some(1), new).unwrap();
            assert_eq!(got, want);
        };
        let mut cold = Duration::MAX;
        for _ in 0..3 {
            drop_caches();
            cold = cold.min(best_of(1, || diff_through(&FileSource::open(path).unwrap())).0);
        }
        let keep = File::open(path).unwrap(); // holds the loop device's page cache
        let (t_diff_warm, _) = best_of(3, || diff_through(&FileSource::open(path).unwrap()));
        drop(keep);
        let (t_diff_direct, _) =
            best_of(3, || diff_through(&FileSource::open_direct(path).unwrap()));
        println!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            stats.nodes_read,
            us(t_crate),
            us(t_table),
            us(t_decode),
            us(t_mem),
            us(t_cold),
            us(t_warm),
            us(t_direct),
            us(cold),
            us(t_diff_warm),
            us(t_diff_direct),
        );
    }
}
