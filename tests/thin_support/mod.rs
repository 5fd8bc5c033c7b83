//! Test-side tools for thin-pool metadata: write device mappings as `thin_restore` XML, build
//! the binary metadata with the real `thin_restore`, and ask the real `thin_delta` / `thin_dump`
//! (thin-provisioning-tools) for the ground truth, as a [`ChangeSet`] to compare against
//! `lvmsync diff --thin-metadata`. Shared by tests/thin_*.rs and benches/thin_vs_thin_delta.rs.
#![allow(dead_code)]

pub mod recording;

use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, Extent, ExtentKind};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Data block size used by the tests, in sectors (the kernel's minimum, 64 KiB).
pub const DATA_BLOCK_SECTORS: u64 = 128;
/// The same in bytes.
pub const DATA_BLOCK_BYTES: u64 = DATA_BLOCK_SECTORS * 512;

/// One thin device to restore: its id and its mappings `(virtual block, data block, time)`,
/// sorted by virtual block without duplicates.
#[derive(Debug, Clone, Default)]
pub struct Device {
    /// Thin device id.
    pub id: u64,
    /// Sorted `(vblock, data_block, time)`.
    pub maps: Vec<(u64, u64, u32)>,
}

/// Write `devices` as a `thin_restore` XML document with metadata `version`.
pub fn xml(devices: &[Device], version: u32) -> String {
    let nr_data = devices
        .iter()
        .flat_map(|d| d.maps.iter().map(|m| m.1 + 1))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut s = String::new();
    writeln!(
        s,
        r#"<superblock uuid="" time="1" transaction="1" flags="0" version="{version}" data_block_size="{DATA_BLOCK_SECTORS}" nr_data_blocks="{nr_data}">"#
    )
    .unwrap();
    for d in devices {
        writeln!(
            s,
            r#"<device dev_id="{}" mapped_blocks="{}" transaction="0" creation_time="0" snap_time="1">"#,
            d.id,
            d.maps.len()
        )
        .unwrap();
        // Compress runs of consecutive virtual and data blocks with one time into ranges.
        let mut i = 0;
        while i < d.maps.len() {
            let (v, b, t) = d.maps[i];
            let mut n = 1;
            while i + n < d.maps.len() && d.maps[i + n] == (v + n as u64, b + n as u64, t) {
                n += 1;
            }
            if n == 1 {
                writeln!(
                    s,
                    r#"<single_mapping origin_block="{v}" data_block="{b}" time="{t}"/>"#
                )
                .unwrap();
            } else {
                writeln!(
                    s,
                    r#"<range_mapping origin_begin="{v}" data_begin="{b}" length="{n}" time="{t}"/>"#
                )
                .unwrap();
            }
            i += n;
        }
        writeln!(s, "</device>").unwrap();
    }
    writeln!(s, "</superblock>").unwrap();
    s
}

/// Build metadata for `devices` at `meta` (a sparse file of `meta_bytes`) with `thin_restore`.
pub fn restore(dir: &Path, meta: &Path, devices: &[Device], version: u32, meta_bytes: u64) {
    let xml_path = dir.join("restore.xml");
    std::fs::write(&xml_path, xml(devices, version)).unwrap();
    let f = std::fs::File::create(meta).unwrap();
    f.set_len(meta_bytes).unwrap();
    drop(f);
    let out = Command::new("thin_restore")
        .arg("-i")
        .arg(&xml_path)
        .arg("-o")
        .arg(meta)
        .output()
        .expect("thin_restore (thin-provisioning-tools) must be installed");
    assert!(
        out.status.success(),
        "thin_restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A metadata size comfortably holding `devices`.
pub fn meta_bytes_for(devices: &[Device]) -> u64 {
    let maps: u64 = devices.iter().map(|d| d.maps.len() as u64).sum();
    (maps / 40 + devices.len() as u64 * 8 + 4096) * 4096
}

/// `(tag, begin, length)` of each `<tag begin=".." length=".."/>` line of thin_delta output.
fn delta_records(xml: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for line in xml.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix('<') else {
            continue;
        };
        let tag: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
            .collect();
        let attr = |name: &str| -> Option<u64> {
            let key = format!(" {name}=\"");
            let at = line.find(&key)? + key.len();
            line[at..].split('"').next()?.parse().ok()
        };
        if let (Some(b), Some(l)) = (attr("begin"), attr("length")) {
            out.push((tag, b, l));
        }
    }
    out
}

/// The ground truth from `thin_delta --snap1 a --snap2 b`: different → changed,
/// right_only → added, left_only → removed, same → left out.
pub fn thin_delta(meta: &Path, a: u64, b: u64) -> ChangeSet {
    thin_delta_with(meta, &[], a, b)
}

/// [`thin_delta`] with `extra` options (such as `-m`, read through the held metadata snapshot).
pub fn thin_delta_with(meta: &Path, extra: &[&str], a: u64, b: u64) -> ChangeSet {
    let out = Command::new("thin_delta")
        .args(extra)
        .args(["--snap1", &a.to_string(), "--snap2", &b.to_string()])
        .arg(meta)
        .output()
        .expect("thin_delta (thin-provisioning-tools) must be installed");
    assert!(
        out.status.success(),
        "thin_delta failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let extents = delta_records(&text).into_iter().filter_map(|(tag, b, l)| {
        let kind = match tag.as_str() {
            "different" => ExtentKind::Changed,
            "right_only" => ExtentKind::Added,
            "left_only" => ExtentKind::Removed,
            "same" => return None,
            other => panic!("unexpected thin_delta record {other}"),
        };
        Some(Extent::new(
            b * DATA_BLOCK_BYTES,
            l * DATA_BLOCK_BYTES,
            kind,
        ))
    });
    ChangeSet::from_extents(Bytes(DATA_BLOCK_BYTES), extents).unwrap()
}

/// The ground truth for "everything mapped in `dev`", from `thin_dump --dev-id`.
pub fn thin_dump_mapped(meta: &Path, dev: u64) -> ChangeSet {
    let out = Command::new("thin_dump")
        .args(["--dev-id", &dev.to_string()])
        .arg(meta)
        .output()
        .expect("thin_dump must be installed");
    assert!(out.status.success(), "thin_dump failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut extents = Vec::new();
    for line in text.lines() {
        let attr = |name: &str| -> Option<u64> {
            let key = format!(" {name}=\"");
            let at = line.find(&key)? + key.len();
            line[at..].split('"').next()?.parse().ok()
        };
        let (begin, len) = if line.contains("<range_mapping") {
            (attr("origin_begin").unwrap(), attr("length").unwrap())
        } else if line.contains("<single_mapping") {
            (attr("origin_block").unwrap(), 1)
        } else {
            continue;
        };
        extents.push(Extent::new(
            begin * DATA_BLOCK_BYTES,
            len * DATA_BLOCK_BYTES,
            ExtentKind::Added,
        ));
    }
    ChangeSet::from_extents(Bytes(DATA_BLOCK_BYTES), extents).unwrap()
}

/// Run the real `lvmsync diff --thin-metadata META [--snap1 A] --snap2 B --json` binary.
pub fn lvmsync_diff(meta: &Path, a: Option<u64>, b: u64) -> ChangeSet {
    lvmsync_diff_with(meta, &[], a, b)
}

/// [`lvmsync_diff`] with `extra` options (such as `--metadata-snap`).
pub fn lvmsync_diff_with(meta: &Path, extra: &[&str], a: Option<u64>, b: u64) -> ChangeSet {
    let mut cmd = Command::new(lvmsync_bin());
    cmd.arg("diff")
        .arg("--thin-metadata")
        .arg(meta)
        .arg("--json")
        .args(extra);
    if let Some(a) = a {
        cmd.args(["--snap1", &a.to_string()]);
    }
    cmd.args(["--snap2", &b.to_string()]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "lvmsync diff failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("diff --json prints a change set")
}

/// A private copy of the `lvmsync` binary under test: the shared target directory's copy can
/// vanish for a moment while another build relinks it.
pub fn lvmsync_bin() -> &'static Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        // One fixed name per test crate, replaced atomically, so repeated runs don't pile up.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let crate_name = env!("CARGO_CRATE_NAME");
        let bin = dir.join(format!("lvmsync-{crate_name}"));
        let tmp = dir.join(format!("lvmsync-{crate_name}.{}", std::process::id()));
        std::fs::copy(env!("CARGO_BIN_EXE_lvmsync"), &tmp).unwrap();
        std::fs::rename(&tmp, &bin).unwrap();
        bin
    })
}

/// The diff of two mapping lists computed directly (for trees no external tool can read).
pub fn reference_diff(old: Option<&[(u64, u64, u32)]>, new: &[(u64, u64, u32)]) -> ChangeSet {
    use std::collections::BTreeMap;
    let o: BTreeMap<u64, u64> = old.unwrap_or(&[]).iter().map(|m| (m.0, m.1)).collect();
    let n: BTreeMap<u64, u64> = new.iter().map(|m| (m.0, m.1)).collect();
    let mut ext = Vec::new();
    for (v, d) in &n {
        match o.get(v) {
            None => ext.push((*v, ExtentKind::Added)),
            Some(od) if od != d => ext.push((*v, ExtentKind::Changed)),
            _ => {}
        }
    }
    for v in o.keys().filter(|v| !n.contains_key(v)) {
        ext.push((*v, ExtentKind::Removed));
    }
    ChangeSet::from_extents(
        Bytes(DATA_BLOCK_BYTES),
        ext.into_iter()
            .map(|(v, k)| Extent::new(v * DATA_BLOCK_BYTES, DATA_BLOCK_BYTES, k)),
    )
    .unwrap()
}
