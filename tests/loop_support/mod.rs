//! Host loop devices for tests that need a real block device: a sparse backing file attached
//! with `losetup`, optionally formatted and mounted; unmounted, detached and deleted on drop
//! (also when the test panics). Tests skip, with the reason printed, where loop devices are
//! really unavailable (not root, no loop driver).
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop device over a sparse file in a temporary directory.
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
    mounted: Option<PathBuf>,
    _backing: tempfile::TempDir,
}

/// Run `cmd args`, panicking with its stderr if it fails; returns stdout.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl LoopDevice {
    /// A new loop device of `size_mib` MiB (reading as zeroes), or `None` after printing why
    /// loop devices can't be used here.
    pub fn new(size_mib: u64) -> Option<LoopDevice> {
        // SAFETY: geteuid has no preconditions and can't fail.
        if unsafe { nix::libc::geteuid() } != 0 {
            eprintln!("skipping: loop devices need root");
            return None;
        }
        if !Path::new("/dev/loop-control").exists() {
            eprintln!("skipping: no /dev/loop-control (loop driver not available)");
            return None;
        }
        let backing = tempfile::tempdir().unwrap();
        let file = backing.path().join("disk.img");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(size_mib << 20))
            .unwrap();
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output();
        match o {
            Ok(o) if o.status.success() => Some(LoopDevice {
                path: PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
                mounted: None,
                _backing: backing,
            }),
            Ok(o) => {
                eprintln!(
                    "skipping: losetup failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipping: can't run losetup: {e}");
                None
            }
        }
    }

    /// The device path as a string.
    pub fn dev(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Make an ext4 filesystem on it, fully initialised (no lazy init writing later).
    pub fn mkfs_ext4(&self) {
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                self.dev(),
            ],
        );
    }

    /// Mount it (read-write) on `dir`, created if missing.
    pub fn mount(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        run("mount", &[self.dev(), dir.to_str().unwrap()]);
        self.mounted = Some(dir.to_path_buf());
    }

    /// Unmount it.
    pub fn umount(&mut self) {
        if let Some(dir) = self.mounted.take() {
            run("umount", &[dir.to_str().unwrap()]);
        }
    }

    /// blake3 of the device's bytes (read without claiming it).
    pub fn hash(&self) -> blake3::Hash {
        blake3::hash(&std::fs::read(&self.path).unwrap())
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(dir) = self.mounted.take() {
            let _ = Command::new("umount").arg(&dir).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}
