//! First guest scenario: a VG on loop devices holding a classic LV with a COW snapshot and a
//! thin pool with a thin LV and a thin snapshot. Checks the dm tables through the
//! `devicemapper` crate against what LVM reports, `lvmsync probe` (text and JSON) against
//! both, and `lvmsync diff` on them against the blocks written (errors: `probe_errors`).

use devicemapper::{DevId, Device, DmFlags, DmName, DmOptions, DM};
use lvmsync::dm::name::lv_dm_name;
use lvmsync::dm::table::{DevNum, Target};
use lvmsync::units::Bytes;
use lvmsync_vm_tests::{lvmsync, run, write_at, VolumeGroup};
use serde_json::Value;
use std::collections::HashMap;

/// The classic snapshot's chunk size and the pool's block size, as requested from LVM.
const CHUNK: u64 = 8192;
const POOL_BLOCK: u64 = 131072;
/// Written to the origin after the classic snapshot: straddles chunks 3 and 4.
const COW_WRITE: (u64, usize) = (3 * CHUNK + 100, 8192);
/// Written to the thin LV before its snapshot (blocks 0 and 1), then after it: inside
/// block 1 (mapped in both: changed) and inside block 5 (new: added).
const THIN_BASE: (u64, usize) = (0, 2 * POOL_BLOCK as usize);
const THIN_WRITES: [(u64, usize); 2] = [(POOL_BLOCK + 4096, 4096), (5 * POOL_BLOCK, 512)];

/// Classic LV `my-data` + COW snapshot `snap`; pool `pool` + thin LV `thin` + thin snapshot
/// `thin-snap`; the writes above after each snapshot.
fn scenario() -> VolumeGroup {
    let vg = VolumeGroup::new("lvsync-probe", 2, 128);
    vg.lvcreate(&["-L", "32M", "-n", "my-data", &vg.name]);
    let data = mapper(&vg, "my-data");
    write_at(&data, 0, &[0xa5; 65536]);
    lvmsync::dm::lvm::create_cow_snapshot(&vg.lv("my-data"), "snap", Bytes(16 << 20), Bytes(CHUNK))
        .expect("lvcreate -s");
    write_at(&data, COW_WRITE.0, &vec![0x5a; COW_WRITE.1]);

    vg.thin_pool_with_thin("64M", "128k", "64M");
    let thin = mapper(&vg, "thin");
    write_at(&thin, THIN_BASE.0, &vec![0x11; THIN_BASE.1]);
    lvmsync::dm::lvm::create_thin_snapshot(&vg.lv("thin"), "thin-snap").expect("thin snapshot");
    for (off, len) in THIN_WRITES {
        write_at(&thin, off, &vec![0x22; len]);
    }
    vg
}

pub(super) fn dm_name(vg: &VolumeGroup, lv: &str) -> String {
    lv_dm_name(&vg.name, lv)
}

/// The dm name of LVM's hidden layer device `<vg>-<lv>-<layer>` (the layer is not mangled).
fn layer(vg: &VolumeGroup, lv: &str, layer: &str) -> String {
    format!("{}-{layer}", dm_name(vg, lv))
}

fn mapper(vg: &VolumeGroup, lv: &str) -> String {
    format!("/dev/mapper/{}", dm_name(vg, lv))
}

/// Each device's single table line, read with the `devicemapper` crate.
fn dm_tables(dm: &DM, prefix: &str) -> HashMap<String, (Device, String, Vec<String>)> {
    let mut out = HashMap::new();
    for (name, dev, _) in dm.list_devices().expect("DM_LIST_DEVICES") {
        let name = name.to_string();
        if !name.starts_with(prefix) {
            continue;
        }
        let id = DevId::Name(DmName::new(&name).unwrap());
        let (_, table) = dm
            .table_status(
                &id,
                DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
            )
            .expect("DM_TABLE_STATUS");
        assert_eq!(table.len(), 1, "{name}: {table:?}");
        let (_, _, ty, params) = table.into_iter().next().unwrap();
        out.insert(
            name,
            (
                dev,
                ty,
                params.split_whitespace().map(String::from).collect(),
            ),
        );
    }
    out
}

fn sectors(bytes: &str) -> String {
    (bytes.parse::<u64>().unwrap() / 512).to_string()
}

/// One scenario (LVM commands are slow under TCG), two checks.
#[test]
fn classic_and_thin_snapshots() {
    let vg = scenario();
    check_dm_tables(&vg);
    check_probe(&vg);
    check_live_diff(&vg);
}

/// `(offset, length)` of the whole `block`-sized blocks a write of `len` bytes at `off` touches.
fn blocks_touched(off: u64, len: usize, block: u64) -> (u64, u64) {
    let start = off / block * block;
    let end = (off + len as u64).div_ceil(block) * block;
    (start, end - start)
}

fn diff_json(args: &[&str]) -> Value {
    let out = lvmsync(&[&["diff", "--json"], args].concat());
    assert!(
        out.status.success(),
        "diff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("diff --json prints JSON")
}

fn extents(v: &Value) -> Vec<(u64, u64, String)> {
    v["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["offset"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `lvmsync diff <snapshot> [--since]` dispatches to the COW or thin reader and returns
/// exactly the blocks the scenario wrote after each snapshot.
fn check_live_diff(vg: &VolumeGroup) {
    // Classic: the snapshot's own store lists what the origin changed since it was taken.
    let cow = diff_json(&[&vg.lv("snap")]);
    let (off, len) = blocks_touched(COW_WRITE.0, COW_WRITE.1, CHUNK);
    assert_eq!(cow["block_size"], CHUNK);
    assert_eq!(extents(&cow), vec![(off, len, "changed".to_string())]);

    // Thin, snapshot -> thin LV: block 1 changed, block 5 added.
    let thin = diff_json(&[&vg.lv("thin"), "--since", &vg.lv("thin-snap")]);
    assert_eq!(thin["block_size"], POOL_BLOCK);
    let want: Vec<_> = THIN_WRITES
        .iter()
        .zip(["changed", "added"])
        .map(|(&(o, l), kind)| {
            let (o, l) = blocks_touched(o, l, POOL_BLOCK);
            (o, l, kind.to_string())
        })
        .collect();
    assert_eq!(extents(&thin), want);

    // Thin snapshot alone: everything mapped in it (the base write), as `added`.
    let full = diff_json(&[&vg.lv("thin-snap")]);
    let (o, l) = blocks_touched(THIN_BASE.0, THIN_BASE.1, POOL_BLOCK);
    assert_eq!(extents(&full), vec![(o, l, "added".to_string())]);

    // The pool's metadata snapshot was released again.
    let pool = probe_json(&vg.lv("pool"));
    assert_eq!(pool["pool"]["status"]["held_metadata_root"], Value::Null);

    // --since must name a snapshot of the same kind.
    let err = probe_fails(&["diff", &vg.lv("thin"), "--since", &vg.lv("snap")]);
    assert!(
        err.contains(&vg.lv("snap")) && err.contains("same kind"),
        "{err}"
    );
}

/// The tables, read through the `devicemapper` crate, against what LVM reports.
fn check_dm_tables(vg: &VolumeGroup) {
    let lvs = vg.lvs_report(&["chunk_size", "thin_id", "lv_uuid", "vg_uuid"]);
    let field = |lv: &str, f: &str| lvs[lv][f].clone();
    let dm = DM::new().expect("open /dev/mapper/control");
    let t = dm_tables(&dm, &format!("{}-", vg.name.replace('-', "--")));
    let devnum = |name: String| t[&name].0.to_string();
    let get = |lv: &str| {
        let (_, ty, params) = &t[&dm_name(vg, lv)];
        (ty.as_str(), params.clone())
    };

    // Classic: the origin LV becomes snapshot-origin over <lv>-real; the snapshot maps
    // <lv>-real and <snap>-cow, persistent, with the chunk size LVM reports.
    let (ty, p) = get("my-data");
    assert_eq!(
        (ty, p),
        (
            "snapshot-origin",
            vec![devnum(layer(vg, "my-data", "real"))]
        )
    );
    let (ty, p) = get("snap");
    assert_eq!(ty, "snapshot");
    let chunk = sectors(&field("snap", "chunk_size"));
    assert_eq!(chunk, "16", "8 KiB chunks were requested");
    assert_eq!(
        p,
        vec![
            devnum(layer(vg, "my-data", "real")),
            devnum(layer(vg, "snap", "cow")),
            "P".into(),
            chunk
        ]
    );

    // Thin: the pool target sits on <pool>-tpool over _tmeta/_tdata with LVM's chunk size;
    // the thin LV and its snapshot are thin targets with LVM's thin ids.
    let (_, ty, p) = &t[&layer(vg, "pool", "tpool")];
    assert_eq!(ty, "thin-pool");
    let block = sectors(&field("pool", "chunk_size"));
    assert_eq!(block, "256", "128 KiB pool blocks were requested");
    assert_eq!(
        p[..3],
        [
            devnum(dm_name(vg, "pool_tmeta")),
            devnum(dm_name(vg, "pool_tdata")),
            block
        ]
    );
    let thin_ids: Vec<String> = ["thin", "thin-snap"]
        .iter()
        .map(|lv| field(lv, "thin_id"))
        .collect();
    assert_ne!(thin_ids[0], thin_ids[1]);
    for (lv, id) in ["thin", "thin-snap"].iter().zip(&thin_ids) {
        assert_eq!(
            get(lv),
            ("thin", vec![devnum(layer(vg, "pool", "tpool")), id.clone()]),
            "{lv}"
        );
    }

    // lvmsync's own table parser agrees with the raw lines.
    let (_, ty, params) = &t[&dm_name(vg, "snap")];
    match Target::parse(ty, &params.join(" ")).unwrap() {
        Target::Snapshot {
            chunk_size, cow, ..
        } => {
            assert_eq!(chunk_size.0, 16);
            assert_eq!(cow.to_string(), devnum(layer(vg, "snap", "cow")));
        }
        other => panic!("snap parsed as {other:?}"),
    }
    let (_, ty, params) = &t[&dm_name(vg, "thin-snap")];
    let parsed = Target::parse(ty, &params.join(" ")).unwrap();
    let pool: DevNum = devnum(layer(vg, "pool", "tpool")).parse().unwrap();
    assert_eq!(
        parsed,
        Target::Thin {
            pool,
            dev_id: thin_ids[1].parse().unwrap(),
            external_origin: None
        }
    );
}

pub(super) fn probe_json(dev: &str) -> Value {
    let out = lvmsync(&["probe", dev, "--json"]);
    assert!(
        out.status.success(),
        "probe {dev}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("probe --json prints JSON")
}

fn probe_text(dev: &str) -> HashMap<String, String> {
    let out = lvmsync(&["probe", dev]);
    assert!(
        out.status.success(),
        "probe {dev}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// `lvmsync probe` (JSON and text) against LVM, dmsetup and blockdev.
fn check_probe(vg: &VolumeGroup) {
    let lvs = vg.lvs_report(&["chunk_size", "thin_id", "lv_uuid", "vg_uuid"]);
    let field = |lv: &str, f: &str| lvs[lv][f].clone();
    let size_of = |lv: &str| {
        run("blockdev", &["--getsize64", &mapper(vg, lv)])
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let dm_uuid = |lv: &str| {
        run(
            "dmsetup",
            &["info", "-c", "--noheadings", "-o", "uuid", &dm_name(vg, lv)],
        )
        .trim()
        .to_string()
    };

    for (lv, kind) in [
        ("my-data", "origin"),
        ("snap", "cow-snapshot"),
        ("thin", "thin"),
        ("thin-snap", "thin"),
        ("pool", "thin-pool"),
    ] {
        let j = probe_json(&vg.lv(lv));
        assert_eq!(j["kind"], kind, "{lv}: {j:#}");
        assert_eq!(j["dm_name"], dm_name(vg, lv), "{lv}");
        assert_eq!(j["size"], size_of(lv), "{lv}");
        assert_eq!(j["dm_uuid"], dm_uuid(lv), "{lv}");
        assert_eq!(j["lvm_uuids"]["lv_uuid"], field(lv, "lv_uuid"), "{lv}");
        assert_eq!(j["lvm_uuids"]["vg_uuid"], field(lv, "vg_uuid"), "{lv}");
        assert_eq!(j["lv"]["vg"], vg.name.as_str());
        assert_eq!(j["lv"]["lv"], lv);
        // The same device by its other names.
        // (LVM makes no /dev/<vg>/<lv> link for a thin pool.)
        let dev_link = format!("/dev/{}/{lv}", vg.name);
        for alias in [dev_link, mapper(vg, lv)]
            .into_iter()
            .filter(|a| lv != "pool" || a.starts_with("/dev/mapper"))
        {
            assert_eq!(probe_json(&alias)["dm_name"], j["dm_name"], "{alias}");
        }
    }

    let origin = probe_json(&vg.lv("my-data"));
    assert_eq!(
        origin["snapshots"],
        serde_json::json!([dm_name(vg, "snap")])
    );

    let snap = probe_json(&vg.lv("snap"));
    let s = &snap["snapshot"];
    assert_eq!(s["origin"], dm_name(vg, "my-data"));
    assert_eq!(s["origin_real"], layer(vg, "my-data", "real"));
    assert_eq!(s["cow_device"], layer(vg, "snap", "cow"));
    assert_eq!(s["chunk_size"].to_string(), field("snap", "chunk_size"));
    assert_eq!(s["store"], "persistent");
    assert_eq!(s["status"]["state"], "valid");

    let pool_block = field("pool", "chunk_size");
    for lv in ["thin", "thin-snap"] {
        let j = probe_json(&vg.lv(lv));
        assert_eq!(
            j["thin"]["dev_id"].to_string(),
            field(lv, "thin_id"),
            "{lv}"
        );
        assert_eq!(j["pool"]["pool_device"], layer(vg, "pool", "tpool"));
        assert_eq!(j["pool"]["metadata_device"], dm_name(vg, "pool_tmeta"));
        assert_eq!(j["pool"]["block_size"].to_string(), pool_block);
        assert_eq!(j["pool"]["status"]["held_metadata_root"], Value::Null);
    }
    let pool = probe_json(&vg.lv("pool"));
    assert_eq!(pool["pool"]["block_size"].to_string(), pool_block);

    // Text output carries the same facts.
    let text = probe_text(&vg.lv("snap"));
    assert_eq!(text["kind"], "cow-snapshot");
    assert_eq!(text["dm name"], dm_name(vg, "snap"));
    assert_eq!(text["origin"], dm_name(vg, "my-data"));
    assert_eq!(
        text["chunk size"],
        format!("{} bytes", field("snap", "chunk_size"))
    );
    assert_eq!(text["size"], format!("{} bytes", size_of("snap")));
    let text = probe_text(&vg.lv("thin-snap"));
    assert_eq!(text["kind"], "thin");
    assert_eq!(text["thin dev id"], field("thin-snap", "thin_id"));
    assert_eq!(text["pool"], layer(vg, "pool", "tpool"));
    assert_eq!(text["block size"], format!("{pool_block} bytes"));
}

/// Run `lvmsync <args>` expecting failure; return its stderr.
pub(super) fn probe_fails(args: &[&str]) -> String {
    let out = lvmsync(args);
    assert!(!out.status.success(), "lvmsync {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}
