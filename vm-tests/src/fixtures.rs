//! Fixtures for guest tests: commands, loop devices and LVM volume groups that clean up in
//! `Drop`, and the path of the `lvmsync` binary under test.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The variable the guest's init sets (see `vm-tests/init`).
pub const GUEST_ENV: &str = "LVMSYNC_VM_GUEST";

/// Panic, with how to run it properly, unless this runs inside the lvmsync QEMU guest.
pub fn require_guest() {
    if std::env::var(GUEST_ENV).as_deref() != Ok("1") {
        panic!(
            "this test needs real device-mapper/LVM and must run inside the QEMU guest, not on \
             the host: run it through vm-tests/run, e.g. \
             CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=\"$PWD/vm-tests/run --\" cargo test \
             -p lvmsync-vm-tests -- --test-threads=1 (see docs/vm-tests.md)"
        );
    }
}

/// The `lvmsync` binary under test: `$LVMSYNC_BIN`, else `lvmsync` next to the `deps/` dir
/// this test binary was built into (`target/<profile>/lvmsync`).
pub fn lvmsync_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LVMSYNC_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("lvmsync"))
        .expect("test binary is not inside target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --bin lvmsync` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Run a command; panic with its stderr unless it succeeds. Returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = run_status(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command and return its output whatever its status.
pub fn run_status(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

static UNIQUE: AtomicU32 = AtomicU32::new(0);
/// LVM scenarios share the kernel's dm and loop state: one at a time.
static LVM_LOCK: Mutex<()> = Mutex::new(());

/// A loop device over a sparse file in the guest's /tmp; detached and deleted on drop.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: String,
    file: PathBuf,
}

impl LoopDevice {
    /// A new loop device of `size_mib` MiB.
    pub fn new(size_mib: u64) -> Self {
        require_guest();
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let file =
            std::env::temp_dir().join(format!("lvmsync-loop-{}-{n}.img", std::process::id()));
        let f = std::fs::File::create(&file).expect("create loop backing file");
        f.set_len(size_mib << 20).expect("size loop backing file");
        let path = run("losetup", &["--find", "--show", file.to_str().unwrap()])
            .trim()
            .to_string();
        LoopDevice { path, file }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = run_status("losetup", &["-d", &self.path]);
        let _ = std::fs::remove_file(&self.file);
    }
}

/// An LVM volume group on fresh loop devices; removed (with every LV) on drop. Holds a
/// process-wide lock so LVM scenarios never overlap.
pub struct VolumeGroup {
    /// The VG name (it contains a dash, to exercise dm name mangling).
    pub name: String,
    loops: Vec<LoopDevice>,
    _lock: MutexGuard<'static, ()>,
}

impl VolumeGroup {
    /// A VG named `<prefix>-<n>` over `disks` loop devices of `size_mib` MiB each.
    pub fn new(prefix: &str, disks: usize, size_mib: u64) -> Self {
        require_guest();
        let lock = LVM_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("{prefix}-{}", UNIQUE.fetch_add(1, Ordering::Relaxed));
        let loops: Vec<LoopDevice> = (0..disks).map(|_| LoopDevice::new(size_mib)).collect();
        let pvs: Vec<&str> = loops.iter().map(|l| l.path.as_str()).collect();
        run("pvcreate", &[&["-q", "--yes"], pvs.as_slice()].concat());
        run(
            "vgcreate",
            &[&["-q", name.as_str()], pvs.as_slice()].concat(),
        );
        VolumeGroup {
            name,
            loops,
            _lock: lock,
        }
    }

    /// `vg/lv` for LV `lv` of this VG.
    pub fn lv(&self, lv: &str) -> String {
        format!("{}/{lv}", self.name)
    }

    /// Run `lvcreate -q --yes <args>` (name the VG/LV in `args`).
    pub fn lvcreate(&self, args: &[&str]) {
        run("lvcreate", &[&["-q", "--yes"], args].concat());
    }

    /// Create thin pool `pool` of `pool_size` (e.g. "64M") with data blocks of `block`
    /// (e.g. "64k") and 4 MiB of metadata, and thin LV `thin` of `thin_size` in it.
    pub fn thin_pool_with_thin(&self, pool_size: &str, block: &str, thin_size: &str) {
        self.lvcreate(&[
            "--type",
            "thin-pool",
            "-L",
            pool_size,
            "--poolmetadatasize",
            "4M",
            "--chunksize",
            block,
            "-n",
            "pool",
            &self.name,
        ]);
        self.lvcreate(&["-V", thin_size, "-T", &self.lv("pool"), "-n", "thin"]);
    }

    /// One field of `lvs` for LV `lv` (e.g. `thin_id`, `lv_uuid`, `chunk_size` in bytes).
    pub fn lvs_field(&self, lv: &str, field: &str) -> String {
        run(
            "lvs",
            &[
                "--noheadings",
                "--nosuffix",
                "--units",
                "b",
                "-o",
                field,
                &self.lv(lv),
            ],
        )
        .trim()
        .to_string()
    }

    /// `lvs` fields for every LV of the VG (hidden ones included) in one call (each lvm
    /// command costs about a second under TCG): LV name -> field name -> value (sizes in bytes).
    pub fn lvs_report(&self, fields: &[&str]) -> HashMap<String, HashMap<String, String>> {
        let cols = format!("lv_name,{}", fields.join(","));
        let out = run(
            "lvs",
            &[
                "-a",
                "--noheadings",
                "--nosuffix",
                "--units",
                "b",
                "--separator",
                "|",
                "-o",
                &cols,
                &self.name,
            ],
        );
        out.lines()
            .filter_map(|line| {
                let mut vals = line.trim().split('|');
                let lv = vals
                    .next()?
                    .trim_matches(|c| c == '[' || c == ']')
                    .to_string();
                let row = fields
                    .iter()
                    .map(|f| f.to_string())
                    .zip(vals.map(|v| v.trim().to_string()));
                Some((lv, row.collect()))
            })
            .collect()
    }

    /// The loop devices under the VG.
    pub fn loop_devices(&self) -> impl Iterator<Item = &str> {
        self.loops.iter().map(|l| l.path.as_str())
    }
}

impl Drop for VolumeGroup {
    fn drop(&mut self) {
        let _ = run_status("vgremove", &["-q", "-ff", "--yes", &self.name]);
        for l in &self.loops {
            let _ = run_status("pvremove", &["-q", "-ff", "--yes", &l.path]);
        }
    }
}

/// Write `data` at byte `offset` of block device `dev` and flush it to the device.
pub fn write_at(dev: &str, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .unwrap_or_else(|e| panic!("open {dev}: {e}"));
    f.write_all_at(data, offset)
        .unwrap_or_else(|e| panic!("write {dev} at {offset}: {e}"));
    f.sync_all().unwrap_or_else(|e| panic!("fsync {dev}: {e}"));
}

/// Run the `lvmsync` binary under test with `args`.
pub fn lvmsync(args: &[&str]) -> Output {
    Command::new(lvmsync_bin())
        .args(args)
        .output()
        .expect("run lvmsync")
}
