//! Guest scenario: delta streams from real LVM snapshots into a destination LV.
//!
//! - Thin: a full `lvmsync send` of thin snapshot s1 (as a delta file, `lvmsync apply`), then
//!   known writes and a discard on the thin LV, snapshot s2, `send s2 --since s1` applied the
//!   same way: the destination equals s1, then s2, byte for byte. Then 4 KiB writes into
//!   24 of s2's mapped 64 KiB blocks, snapshot s3: `send s3 --since s2` carries their 24
//!   whole blocks while s2 is writable, and about those 24 units once it is read-only
//!   (`lvchange -pr`: refined against s2); the destination equals s3. Then the thin LV
//!   grows by 4 MiB (one 4 KiB write there), and so does the destination (`lvextend`, junk
//!   in its new part): `send s4 --since s3` makes it equal s4. Then s5, its table cut back to
//!   8 MiB by hand (a shrink that left the block at 9 MiB mapped), and s6 at 12 MiB: a full
//!   send of s5 and `send s6 --since s5` into a fresh destination make it equal s6 (the
//!   block the diff does not list, mapped in both, is sent).
//! - Classic: the same with a classic LV and COW snapshots, streamed through a pipe
//!   (`send --to - | lvmsync receive <dest>`); the incremental's changed chunks come from
//!   the older snapshot's exception store, its data from the newer snapshot. With 4 KiB
//!   chunks the changes are not refined against a read-only older snapshot (a dry run says
//!   no upper bound) unless --refine says so.
//!
//! - External origin: a thin LV over a read-only LV, full and incremental sends of its
//!   snapshots (unmapped blocks read the origin's bytes, not zeroes).
//!
//! Each destination starts filled with junk, so a range the stream does not write (or zero)
//! shows up in the compare.

use lvmsync::dm::lvm::{create_cow_snapshot, create_thin_snapshot};
use lvmsync::dm::name::lv_dm_name;
use lvmsync::units::Bytes;
use lvmsync_vm_tests::{lvmsync_bin, run, run_status, write_at, VolumeGroup};
use std::process::{Command, Stdio};

pub(crate) const MIB: u64 = 1 << 20;
/// Size of the source LVs and the destinations.
const SIZE: u64 = 8 * MIB;

/// `n` bytes of a xorshift stream seeded with `seed` (incompressible, reproducible).
pub(crate) fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes made between the two snapshots: first and last sector, a write straddling a
/// 64 KiB chunk boundary, a multi-chunk run and scattered 4 KiB blocks.
fn writes() -> Vec<(u64, Vec<u8>)> {
    let mut w = vec![
        (0, noise(1, 512)),
        (SIZE - 512, noise(2, 512)),
        (3 * 65536 - 700, noise(3, 1400)),
        (2 * MIB + 12345, noise(4, 300_000)),
    ];
    w.extend((0..40).map(|i| (4 * MIB + i * 81920, noise(10 + i, 4096))));
    w
}

pub(crate) fn mapper(vg: &VolumeGroup, lv: &str) -> String {
    format!("/dev/mapper/{}", lv_dm_name(&vg.name, lv))
}

/// Fill `dev` with a junk pattern the streams never produce.
fn fill_junk(dev: &str) {
    write_at(dev, 0, &vec![0xEE; SIZE as usize]);
}

/// Assert devices `got` and `want` hold the same bytes; name the first differing offset.
pub(crate) fn assert_same(got: &str, want: &str, what: &str) {
    if let Some(d) = difference(got, want, what) {
        panic!("{d}");
    }
}

/// Where devices `got` and `want` first differ, as a message starting with `what`; `None` if
/// they hold the same bytes.
pub(crate) fn difference(got: &str, want: &str, what: &str) -> Option<String> {
    let a = std::fs::read(got).unwrap_or_else(|e| panic!("read {got}: {e}"));
    let b = std::fs::read(want).unwrap_or_else(|e| panic!("read {want}: {e}"));
    if a.len() != b.len() {
        return Some(format!("{what}: {got} and {want} differ in size"));
    }
    let i = a.iter().zip(&b).position(|(x, y)| x != y)?;
    Some(format!(
        "{what}: {got} differs from {want} at byte {i} ({:#04x} != {:#04x})",
        a[i], b[i]
    ))
}

/// `lvmsync <args>`; panic with its stderr unless it succeeds.
pub(crate) fn lvmsync_ok(args: &[&str]) {
    run(&lvmsync_bin().to_string_lossy(), args);
}

/// `lvmsync send <send_args> --to <file>`, then `lvmsync apply <file> <dest>`. Returns the
/// delta file's size.
pub(crate) fn send_apply(send_args: &[&str], dest: &str, state: &str, file: &str) -> u64 {
    lvmsync_ok(&[&["send", "--progress", "none"], send_args, &["--to", file]].concat());
    lvmsync_ok(&[
        "apply",
        "--progress",
        "none",
        "--state-dir",
        state,
        file,
        dest,
    ]);
    std::fs::metadata(file).expect("delta file").len()
}

/// `lvmsync send <send_args> --to - | lvmsync receive <dest>`.
pub(crate) fn send_receive(send_args: &[&str], dest: &str, state: &str) {
    send_receive_with(send_args, &[], dest, state);
}

/// [`send_receive`] with `receive_args` added to the receive (e.g. `--force`).
pub(crate) fn send_receive_with(
    send_args: &[&str],
    receive_args: &[&str],
    dest: &str,
    state: &str,
) {
    let mut send = Command::new(lvmsync_bin())
        .args([&["send", "--progress", "none"], send_args, &["--to", "-"]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lvmsync send");
    let recv = Command::new(lvmsync_bin())
        .args(["receive", "--progress", "none", "--state-dir", state])
        .args(receive_args)
        .arg(dest)
        .stdin(Stdio::from(send.stdout.take().unwrap()))
        .output()
        .expect("run lvmsync receive");
    let sent = send.wait_with_output().expect("wait for lvmsync send");
    assert!(
        sent.status.success() && recv.status.success(),
        "`lvmsync send {} --to - | lvmsync receive {dest}`: send {} ({}), receive {} ({})",
        send_args.join(" "),
        sent.status,
        String::from_utf8_lossy(&sent.stderr).trim(),
        recv.status,
        String::from_utf8_lossy(&recv.stderr).trim()
    );
}

pub(crate) fn temp(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("lvmsync-stream-lv-{}-{name}", std::process::id()))
        .display()
        .to_string()
}

#[test]
fn thin_full_then_incremental_into_lv() {
    let vg = VolumeGroup::new("lvsync-sthin", 1, 120);
    vg.thin_pool_with_thin("48M", "64k", "8M");
    vg.lvcreate(&["-L", "8M", "-n", "dst", &vg.name]);
    let (thin, dst) = (mapper(&vg, "thin"), mapper(&vg, "dst"));
    fill_junk(&dst);
    // Data in the first 3 MiB and at 6 MiB; the rest of the thin LV stays unmapped.
    write_at(&thin, 0, &noise(100, 3 * MIB as usize));
    write_at(&thin, 6 * MIB, &noise(101, MIB as usize));
    create_thin_snapshot(&vg.lv("thin"), "s1").expect("thin snapshot s1");

    let state = temp("thin-state");
    let full = send_apply(&[&vg.lv("s1")], &dst, &state, &temp("thin-full.lvd"));
    assert_same(&dst, &mapper(&vg, "s1"), "thin full sync of s1");

    for (off, data) in writes() {
        write_at(&thin, off, &data);
    }
    run(
        "blkdiscard",
        &["-o", &(6 * MIB).to_string(), "-l", &MIB.to_string(), &thin],
    );
    create_thin_snapshot(&vg.lv("thin"), "s2").expect("thin snapshot s2");
    let inc = send_apply(
        &[&vg.lv("s2"), "--since", &vg.lv("s1")],
        &dst,
        &state,
        &temp("thin-inc.lvd"),
    );
    assert_same(&dst, &mapper(&vg, "s2"), "thin incremental s1 -> s2");
    assert!(
        inc < full / 2,
        "the incremental delta ({inc} bytes) should carry only the changes, not the full {full}"
    );

    // Sub-block refinement: one 4 KiB unit written in each of 24 blocks mapped in s2.
    const UNITS: u64 = 24;
    for i in 0..UNITS {
        write_at(&thin, i * 131072 + 20480, &noise(300 + i, 4096));
    }
    create_thin_snapshot(&vg.lv("thin"), "s3").expect("thin snapshot s3");
    let (s2, s3) = (vg.lv("s2"), vg.lv("s3"));
    // s2 is writable (LVM's default): it may have been written since it was sent, so it is
    // not refined against unless --refine says so.
    let bin = lvmsync_bin().to_string_lossy().into_owned();
    let plan = run(
        &bin,
        &["send", &s3, "--since", &s2, "--dry-run", "--to", "-"],
    );
    assert!(
        !plan.contains("an upper bound"),
        "dry run, writable s2: {plan}"
    );
    let plan = run(
        &bin,
        &[
            "send",
            &s3,
            "--since",
            &s2,
            "--refine",
            "--dry-run",
            "--to",
            "-",
        ],
    );
    assert!(plan.contains("an upper bound"), "dry run, --refine: {plan}");
    let whole_file = temp("thin-whole.lvd");
    lvmsync_ok(&[
        "send",
        "--progress",
        "none",
        &s3,
        "--since",
        &s2,
        "--to",
        &whole_file,
    ]);
    let whole = std::fs::metadata(&whole_file).expect("delta file").len();
    // Read-only, it is refined against by default.
    run("lvchange", &["-pr", &s2]);
    let refined = send_apply(
        &[&s3, "--since", &s2],
        &dst,
        &state,
        &temp("thin-refined.lvd"),
    );
    assert_same(
        &dst,
        &mapper(&vg, "s3"),
        "thin refined incremental s2 -> s3",
    );
    assert!(
        whole > UNITS * 65536 && refined < UNITS * 4096 + 8192,
        "refined delta {refined} bytes, whole-block delta {whole} bytes, for {UNITS} changed \
         4 KiB units in 64 KiB blocks"
    );

    // The volume grows by 4 MiB: one 4 KiB unit written in one new block, the rest of the
    // grown part unmapped. The destination is grown with lvextend and holds junk there; the
    // delta against read-only s3 must write all of it: the new block's zero units too, and
    // the unmapped part as zeroes.
    run("lvextend", &["-q", "-L", "12M", &vg.lv("thin")]);
    write_at(&thin, 9 * MIB + 4096, &noise(500, 4096));
    create_thin_snapshot(&vg.lv("thin"), "s4").expect("thin snapshot s4");
    run("lvchange", &["-pr", &s3]);
    run("lvextend", &["-q", "-L", "12M", &vg.lv("dst")]);
    write_at(&dst, SIZE, &vec![0xEE; 4 * MIB as usize]);
    send_apply(
        &[&vg.lv("s4"), "--since", &s3],
        &dst,
        &state,
        &temp("thin-grown.lvd"),
    );
    assert_same(&dst, &mapper(&vg, "s4"), "thin grown s3 -> s4");

    // A volume shrunk without unmapping its tail, snapshotted, then grown back: s5's table is
    // cut to 8 MiB by hand (lvreduce may discard the tail) while it still maps the block at
    // 9 MiB, and s6 (12 MiB) maps that block identically, so no side of their diff lists it.
    // A full send of s5 stops at its end; `send s6 --since s5` sends that block as data.
    create_thin_snapshot(&vg.lv("thin"), "s5").expect("thin snapshot s5");
    create_thin_snapshot(&vg.lv("thin"), "s6").expect("thin snapshot s6");
    let s5 = lv_dm_name(&vg.name, "s5");
    let table = run("dmsetup", &["table", &s5]);
    let target = table.trim().splitn(3, ' ').nth(2).expect("thin table line");
    let cut = format!("0 {} {target}", SIZE / 512);
    run("dmsetup", &["reload", &s5, "--table", &cut]);
    run("dmsetup", &["resume", &s5]);
    vg.lvcreate(&["-L", "8M", "-n", "dst2", &vg.name]);
    let dst2 = mapper(&vg, "dst2");
    fill_junk(&dst2);
    let state2 = temp("thin-state2");
    send_apply(&[&vg.lv("s5")], &dst2, &state2, &temp("thin-s5.lvd"));
    assert_same(
        &dst2,
        &mapper(&vg, "s5"),
        "thin full sync of s5 (cut to 8 MiB)",
    );
    run("lvextend", &["-q", "-L", "12M", &vg.lv("dst2")]);
    write_at(&dst2, SIZE, &vec![0xEE; 4 * MIB as usize]);
    send_apply(
        &[&vg.lv("s6"), "--since", &vg.lv("s5")],
        &dst2,
        &state2,
        &temp("thin-regrown.lvd"),
    );
    assert_same(&dst2, &mapper(&vg, "s6"), "thin shrunk, regrown s5 -> s6");
}

#[test]
fn classic_full_then_incremental_into_lv() {
    let vg = VolumeGroup::new("lvsync-scow", 1, 120);
    vg.lvcreate(&["-L", "8M", "-n", "origin", &vg.name]);
    vg.lvcreate(&["-L", "8M", "-n", "dst", &vg.name]);
    let (origin, dst) = (mapper(&vg, "origin"), mapper(&vg, "dst"));
    fill_junk(&dst);
    write_at(&origin, 0, &noise(200, 5 * MIB as usize));
    create_cow_snapshot(&vg.lv("origin"), "c1", Bytes(8 * MIB), Bytes(65536)).expect("snapshot c1");

    let state = temp("cow-state");
    send_receive(&[&vg.lv("c1")], &dst, &state);
    assert_same(&dst, &mapper(&vg, "c1"), "classic full sync of c1");

    for (off, data) in writes() {
        write_at(&origin, off, &data);
    }
    create_cow_snapshot(&vg.lv("origin"), "c2", Bytes(8 * MIB), Bytes(65536)).expect("snapshot c2");
    send_receive(&[&vg.lv("c2"), "--since", &vg.lv("c1")], &dst, &state);
    assert_same(&dst, &mapper(&vg, "c2"), "classic incremental c1 -> c2");
    assert_same(
        &dst,
        &origin,
        "classic incremental: destination equals the origin",
    );

    // LVM's default 4 KiB chunks are sent as listed, even against a read-only older
    // snapshot: refining them could drop only identical rewrites. --refine still refines.
    create_cow_snapshot(&vg.lv("origin"), "c3", Bytes(8 * MIB), Bytes(4096)).expect("snapshot c3");
    run("lvchange", &["-pr", &vg.lv("c3")]);
    write_at(&origin, 65536, &noise(400, 4096));
    create_cow_snapshot(&vg.lv("origin"), "c4", Bytes(8 * MIB), Bytes(65536)).expect("snapshot c4");
    let (c3, c4) = (vg.lv("c3"), vg.lv("c4"));
    let bin = lvmsync_bin().to_string_lossy().into_owned();
    let dry = ["send", &c4, "--since", &c3, "--dry-run", "--to", "-"];
    let plan = run_status(&bin, &dry);
    let (out, err) = (
        String::from_utf8_lossy(&plan.stdout),
        String::from_utf8_lossy(&plan.stderr),
    );
    assert!(
        plan.status.success()
            && !out.contains("an upper bound")
            && err.contains("4096-byte chunks"),
        "dry run, 4 KiB chunks, read-only c3: {out}{err}"
    );
    let plan = run(&bin, &[&dry[..], &["--refine"]].concat());
    assert!(
        plan.contains("an upper bound"),
        "dry run, 4 KiB chunks, --refine: {plan}"
    );
}

/// A thin LV with an external origin (`lvcreate -s --thinpool pool ext`): where it is
/// unmapped it reads the origin's bytes, not zeroes. A full send of its snapshot t1 carries
/// them (its holes are not discards). Then a 4 KiB unit zeroed in a new block, one written in
/// another, and a mapped block discarded (back to the origin's bytes); snapshot t2, t1 made
/// read-only: `send t2 --since t1` is refined against t1's bytes (the origin's, under the new
/// blocks) and makes the destination equal t2.
#[test]
fn thin_with_external_origin_into_lv() {
    let vg = VolumeGroup::new("lvsync-sext", 1, 120);
    vg.lvcreate(&["-L", "8M", "-n", "ext", &vg.name]);
    vg.lvcreate(&["-L", "8M", "-n", "dst", &vg.name]);
    let (ext, dst) = (mapper(&vg, "ext"), mapper(&vg, "dst"));
    write_at(&ext, 0, &noise(600, SIZE as usize));
    // LVM takes only a read-only, inactive LV as an external origin.
    run("lvchange", &["-pr", &vg.lv("ext")]);
    run("lvchange", &["-an", &vg.lv("ext")]);
    vg.lvcreate(&[
        "--type",
        "thin-pool",
        "-L",
        "32M",
        "--poolmetadatasize",
        "4M",
        "--chunksize",
        "64k",
        "-n",
        "pool",
        &vg.name,
    ]);
    vg.lvcreate(&[
        "-s",
        "--thinpool",
        &vg.lv("pool"),
        "-n",
        "thin",
        &vg.lv("ext"),
    ]);
    let thin = mapper(&vg, "thin");
    write_at(&thin, MIB, &noise(601, 4096));
    create_thin_snapshot(&vg.lv("thin"), "t1").expect("thin snapshot t1");
    fill_junk(&dst);
    let state = temp("ext-state");
    send_apply(&[&vg.lv("t1")], &dst, &state, &temp("ext-full.lvd"));
    assert_same(
        &dst,
        &mapper(&vg, "t1"),
        "full sync of t1 (external origin)",
    );

    write_at(&thin, 3 * MIB + 8192, &[0u8; 4096]);
    write_at(&thin, 5 * MIB, &noise(602, 4096));
    run(
        "blkdiscard",
        &["-o", &MIB.to_string(), "-l", "65536", &thin],
    );
    create_thin_snapshot(&vg.lv("thin"), "t2").expect("thin snapshot t2");
    run("lvchange", &["-pr", &vg.lv("t1")]);
    send_apply(
        &[&vg.lv("t2"), "--since", &vg.lv("t1")],
        &dst,
        &state,
        &temp("ext-inc.lvd"),
    );
    assert_same(&dst, &mapper(&vg, "t2"), "t1 -> t2 (external origin)");
}
