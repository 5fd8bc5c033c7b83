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
//!
//! And a pool without zeroing whose data device holds junk, written in partial pool blocks
//! (`partial_pool_blocks_into_a_pool_without_zeroing`): the receiver writes whole blocks.

use crate::stream_lv::{
    assert_same, difference, lvmsync_ok, mapper, noise, send_receive, send_receive_with, temp, MIB,
};
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
    apply_with(file, &[], dests, state);
}

/// [`apply_to`] with `args` added to each apply (e.g. `--force`).
fn apply_with(file: &str, args: &[&str], dests: &[&str], state: &str) {
    for d in dests {
        let cmd = [
            &["apply", "--progress", "none", "--state-dir", state],
            args,
            &[file, d],
        ];
        lvmsync_ok(&cmd.concat());
    }
}

/// Create thin pool `name` of `size` with data blocks of `block` that skips zeroing new blocks
/// (`-Zn`); returns `vg/name`.
fn nz_pool(vg: &VolumeGroup, name: &str, size: &str, block: &str) -> String {
    vg.lvcreate(&[
        "--type",
        "thin-pool",
        "-L",
        size,
        "--poolmetadatasize",
        "4M",
        "--chunksize",
        block,
        "-Zn",
        "-n",
        name,
        &vg.name,
    ]);
    vg.lv(name)
}

#[test]
fn grown_zero_part_into_thin_and_linear_lvs() {
    let vg = VolumeGroup::new("lvsync-grown", 1, 160);
    vg.thin_pool_with_thin("40M", "64k", "8M");
    let pool = vg.lv("pool");
    vg.lvcreate(&["-V", "8M", "--thinpool", &pool, "-n", "tdst", &vg.name]);
    let nzpool = nz_pool(&vg, "nzpool", "24M", "64k");
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

/// Destinations in a pool without zeroing (`-Zn`, 128 KiB blocks) whose data device holds
/// junk: a write into part of an unprovisioned pool block provisions all of it with the junk
/// around the write. The source (64 KiB blocks) writes 4 KiB pieces into otherwise-zero
/// blocks: the streams carry zero records the destination already reads as zeroes, then data
/// in the same pool block, and (an incremental from an all-zero snapshot into LVs never
/// written) pool blocks of which the stream mentions only one half. A full sync and
/// incrementals, applied from a file and received from a pipe, must still leave each
/// destination equal to the source byte for byte.
#[test]
fn partial_pool_blocks_into_a_pool_without_zeroing() {
    let vg = VolumeGroup::new("lvsync-nzblk", 1, 96);
    vg.thin_pool_with_thin("24M", "64k", "8M");
    let nzpool = nz_pool(&vg, "nzpool", "24M", "128k");
    // Junk over the whole data device: a thin LV as large as the pool, filled, removed.
    vg.lvcreate(&["-V", "24M", "--thinpool", &nzpool, "-n", "junk", &vg.name]);
    write_at(&mapper(&vg, "junk"), 0, &vec![0xEE; 24 * MIB as usize]);
    run("lvremove", &["-q", "-f", &vg.lv("junk")]);
    // The junk is readable around a 4 KiB write into a fresh LV's unprovisioned block.
    vg.lvcreate(&["-V", "1M", "--thinpool", &nzpool, "-n", "probe", &vg.name]);
    let probe = mapper(&vg, "probe");
    write_at(&probe, 0, &[0x11; 4096]);
    let mut block = vec![0; 128 << 10];
    let f = std::fs::File::open(&probe).expect("open probe");
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut block, 0).expect("read probe");
    drop(f);
    assert!(
        block[4096..].iter().filter(|&&b| b == 0xEE).count() > 64 << 10,
        "a 4 KiB write into a -Zn pool should provision its block with the old junk"
    );
    run("lvremove", &["-q", "-f", &vg.lv("probe")]);
    for d in ["nzfile", "nzpipe", "nzfile0", "nzpipe0"] {
        vg.lvcreate(&["-V", "8M", "--thinpool", &nzpool, "-n", d, &vg.name]);
    }
    let (thin, nzfile, nzpipe) = (
        mapper(&vg, "thin"),
        mapper(&vg, "nzfile"),
        mapper(&vg, "nzpipe"),
    );
    // s0: all zeroes, as the fresh (unprovisioned) nzfile0 and nzpipe0 read.
    create_thin_snapshot(&vg.lv("thin"), "s0").expect("thin snapshot s0");
    let state = temp("nzblk-state");
    // Every comparison is made (each apply goes on from the state file, whatever the bytes),
    // then all differences are reported at once.
    let mut differences = Vec::new();

    // s1: 4 KiB in the middle of an otherwise-zero block; 192 KiB across blocks.
    write_at(&thin, MIB + 8192, &noise(800, 4096));
    write_at(&thin, 3 * MIB + 20480, &noise(801, 192 << 10));
    create_thin_snapshot(&vg.lv("thin"), "s1").expect("thin snapshot s1");
    let full = temp("nzblk-full.lvd");
    lvmsync_ok(&["send", "--progress", "none", &vg.lv("s1"), "--to", &full]);
    apply_to(&full, &[&nzfile], &state);
    send_receive(&[&vg.lv("s1")], &nzpipe, &state);
    for d in [&nzfile, &nzpipe] {
        differences.extend(difference(d, &mapper(&vg, "s1"), "full sync of s1"));
    }

    // s2: 4 KiB into new blocks (zeroes, then data, then zeroes in one source block; the
    // destination block's other half never mentioned), and into a block s1 already wrote.
    write_at(&thin, 5 * MIB + (64 << 10) + 4096, &noise(802, 4096));
    write_at(&thin, 6 * MIB + (32 << 10), &noise(803, 4096));
    write_at(&thin, 7 * MIB + (16 << 10), &noise(804, 4096));
    write_at(&thin, MIB + (40 << 10), &noise(805, 4096));
    create_thin_snapshot(&vg.lv("thin"), "s2").expect("thin snapshot s2");
    // s2 --since `older` into `into_file` (applied from a file) and `into_pipe` (received),
    // with `args` added to the apply and the receive.
    let mut incremental = |older: &str, args: &[&str], into_file: &str, into_pipe: &str| {
        let inc = temp(&format!("nzblk-{older}.lvd"));
        let since = [vg.lv("s2"), "--since".into(), vg.lv(older)];
        let since: Vec<&str> = since.iter().map(String::as_str).collect();
        let send = [
            &["send", "--progress", "none"],
            since.as_slice(),
            &["--to", &inc],
        ];
        lvmsync_ok(&send.concat());
        apply_with(&inc, args, &[into_file], &state);
        send_receive_with(&since, args, into_pipe, &state);
        for d in [into_file, into_pipe] {
            let what = format!("incremental {older} -> s2");
            differences.extend(difference(d, &mapper(&vg, "s2"), &what));
        }
    };
    incremental("s1", &[], &nzfile, &nzpipe);
    // From s0 into LVs never written: only the source's changed 64 KiB blocks are sent, so
    // the other half of each 128 KiB pool block they provision is never mentioned. (Forced:
    // a fingerprint names its snapshot, so all-zero LVs don't hold s0's.)
    let (file0, pipe0) = (mapper(&vg, "nzfile0"), mapper(&vg, "nzpipe0"));
    incremental("s0", &["--force"], &file0, &pipe0);
    assert!(
        differences.is_empty(),
        "destinations in a -Zn pool differ from the source:\n{}",
        differences.join("\n")
    );
}
