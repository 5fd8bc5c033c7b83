//! Guest scenario: a thin volume grown by 8 MiB, almost all of it unmapped, sent with
//! `send --since` into destination LVs grown with `lvextend`.
//!
//! - The send reserves the pool's metadata snapshot once for the diff and the grown part's
//!   mappings (counted in its debug log).
//! - A thin destination in a pool that zeroes new blocks (LVM's default): its grown part reads
//!   zeroes, so the stream's zeroes are not written there and provision no pool block (its
//!   mapped sectors in `dmsetup status` grow by the one block the source wrote); the same
//!   holds for the holes of the full sync before. It equals the source.
//! - A thin destination in a pool without zeroing (`-Zn`): a block a later write provisions
//!   holds old data outside that write, so zeroes are written; it equals the source.
//! - A linear destination whose new extents were another LV's, filled with junk: the zeroes
//!   are written (it reads junk there before) and it equals the source.

use crate::stream_lv::{assert_same, lvmsync_ok, mapper, noise, temp, MIB};
use lvmsync::dm::lvm::create_thin_snapshot;
use lvmsync::dm::name::lv_dm_name;
use lvmsync_vm_tests::{lvmsync_bin, run, write_at, VolumeGroup};

/// Mapped bytes of thin LV `dev` (`dmsetup status`: `<start> <len> thin <mapped sectors> ...`).
fn mapped_bytes(dev: &str) -> u64 {
    let status = run("dmsetup", &["status", dev]);
    let f: Vec<&str> = status.split_whitespace().collect();
    assert_eq!(f.get(2), Some(&"thin"), "status of {dev}: {status}");
    f[3].parse::<u64>().expect("mapped sectors") * 512
}

/// Apply delta file `file` to each of `dests`.
fn apply_to(file: &str, dests: &[&str], state: &str) {
    for d in dests {
        lvmsync_ok(&["apply", "--progress", "none", "--state-dir", state, file, d]);
    }
}

#[test]
fn grown_zero_part_into_thin_and_linear_lvs() {
    let vg = VolumeGroup::new("lvsync-grown", 1, 160);
    vg.thin_pool_with_thin("40M", "64k", "8M");
    let pool = vg.lv("pool");
    vg.lvcreate(&["-V", "8M", "--thinpool", &pool, "-n", "tdst", &vg.name]);
    vg.lvcreate(&[
        "--type",
        "thin-pool",
        "-L",
        "24M",
        "--poolmetadatasize",
        "4M",
        "--chunksize",
        "64k",
        "-Zn",
        "-n",
        "nzpool",
        &vg.name,
    ]);
    let nzpool = vg.lv("nzpool");
    vg.lvcreate(&["-V", "8M", "--thinpool", &nzpool, "-n", "nzdst", &vg.name]);
    // The linear destination, then an LV right after it whose extents it gets when grown
    // (nothing else takes extents from the VG after it is removed).
    vg.lvcreate(&["-L", "8M", "-n", "ldst", &vg.name]);
    vg.lvcreate(&["-L", "8M", "-n", "junk", &vg.name]);
    write_at(&mapper(&vg, "junk"), 0, &vec![0xEE; 8 * MIB as usize]);
    run("lvremove", &["-q", "-f", &vg.lv("junk")]);
    let tpool = |p: &str| {
        run(
            "dmsetup",
            &["table", &format!("{}-tpool", lv_dm_name(&vg.name, p))],
        )
    };
    assert!(
        !tpool("pool").contains("skip_block_zeroing"),
        "{}",
        tpool("pool")
    );
    assert!(
        tpool("nzpool").contains("skip_block_zeroing"),
        "{}",
        tpool("nzpool")
    );
    let (thin, tdst, nzdst, ldst) = (
        mapper(&vg, "thin"),
        mapper(&vg, "tdst"),
        mapper(&vg, "nzdst"),
        mapper(&vg, "ldst"),
    );
    let dests = [tdst.as_str(), nzdst.as_str(), ldst.as_str()];

    // 2 MiB of data, the rest of the 8 MiB unmapped: a full sync maps 2 MiB of tdst. (Both
    // sends first, then the applies.)
    write_at(&thin, MIB, &noise(700, 2 * MIB as usize));
    create_thin_snapshot(&vg.lv("thin"), "s1").expect("thin snapshot s1");
    let state = temp("grown-state");
    let full = temp("grown-full.lvd");
    lvmsync_ok(&["send", "--progress", "none", &vg.lv("s1"), "--to", &full]);
    // Grown to 16 MiB, one 4 KiB write at 12 MiB: the grown part is one mapped block.
    run("lvextend", &["-q", "-L", "16M", &vg.lv("thin")]);
    write_at(&thin, 12 * MIB + 8192, &noise(701, 4096));
    create_thin_snapshot(&vg.lv("thin"), "s2").expect("thin snapshot s2");
    let inc = temp("grown-inc.lvd");
    let out = std::process::Command::new(lvmsync_bin())
        .args(["send", "--progress", "none", &vg.lv("s2"), "--since"])
        .args([&vg.lv("s1"), "--to", &inc])
        .env("LVMSYNC_LOG", "debug")
        .output()
        .expect("run lvmsync send");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "send s2 --since s1: {log}");
    let count = |what| log.matches(what).count();
    assert_eq!(
        (
            count("metadata snapshot reserved"),
            count("metadata snapshot released")
        ),
        (1, 1),
        "one metadata snapshot reserved and released: {log}"
    );

    let before = mapped_bytes(&tdst);
    apply_to(&full, &dests, &state);
    for d in dests {
        assert_same(d, &mapper(&vg, "s1"), "full sync of s1");
    }
    assert_eq!(
        mapped_bytes(&tdst) - before,
        2 * MIB,
        "tdst by the full sync"
    );

    for d in ["tdst", "nzdst", "ldst"] {
        run("lvextend", &["-q", "-L", "16M", &vg.lv(d)]);
    }
    let mut grown = vec![0; 8 * MIB as usize];
    let ldst_file = std::fs::File::open(&ldst).expect("open ldst");
    std::os::unix::fs::FileExt::read_exact_at(&ldst_file, &mut grown, 8 * MIB).expect("read");
    assert!(
        grown.iter().filter(|&&b| b == 0xEE).count() > 4 * MIB as usize,
        "ldst's new extents should hold the removed LV's junk"
    );
    let (tdst_before, nzdst_before) = (mapped_bytes(&tdst), mapped_bytes(&nzdst));
    apply_to(&inc, &dests, &state);
    for d in dests {
        assert_same(d, &mapper(&vg, "s2"), "grown s1 -> s2");
    }
    // The one 64 KiB block written at 12 MiB; none for the zeroes.
    assert_eq!(
        mapped_bytes(&tdst) - tdst_before,
        65536,
        "tdst, zeroing pool"
    );
    // Without zeroing the zeroes are written, and provision their blocks.
    assert!(
        mapped_bytes(&nzdst) - nzdst_before >= 4 * MIB,
        "nzdst, pool without zeroing: {} bytes mapped before, {} after",
        nzdst_before,
        mapped_bytes(&nzdst)
    );
}
