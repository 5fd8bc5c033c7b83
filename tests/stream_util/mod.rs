//! Helpers shared by the stream and journal integration tests: deterministic images, an
//! independent block-compare change source (the ground truth for deltas), the binary.
#![allow(dead_code)] // each test binary uses its own subset

use lvmsync::stream::fingerprint::content_fingerprint;
use lvmsync::stream::{send_changes, EncodeOptions, Fingerprint, Header};
use lvmsync::units::Bytes;
use lvmsync::{ChangeSet, Extent, ExtentKind};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `lvmsync` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lvmsync"))
}

/// Crash-test hooks (`LVMSYNC_TEST_*`, src/journal/test_hooks.rs) on a command running
/// [`bin`]. They exist only in a build with the `test-hooks` feature, so the first use checks
/// that the binary has them (its `--version` says so): a crash test driving a build whose
/// hooks are inert would pass without testing anything.
pub trait TestHook {
    /// Set hook variable `var` to `value`.
    fn test_hook(&mut self, var: &str, value: &str) -> &mut Self;
}

impl TestHook for Command {
    fn test_hook(&mut self, var: &str, value: &str) -> &mut Self {
        assert!(var.starts_with("LVMSYNC_TEST_"), "{var} is no test hook");
        assert_eq!(self.get_program(), env!("CARGO_BIN_EXE_lvmsync"));
        static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        CHECKED.get_or_init(|| {
            let o = bin().arg("--version").output().unwrap();
            let version = String::from_utf8_lossy(&o.stdout);
            assert!(
                version.contains(lvmsync::journal::test_hooks::MARK),
                "{} ({}) was built without the `test-hooks` feature, so its LVMSYNC_TEST_* \
                 hooks do nothing; `cargo test` turns the feature on (Cargo.toml's self \
                 dev-dependency): is it still there?",
                env!("CARGO_BIN_EXE_lvmsync"),
                version.trim()
            );
        });
        self.env(var, value)
    }
}

/// A small xorshift generator, so every test image is reproducible from its seed.
pub struct Rng(pub u64);

impl Rng {
    /// Next pseudo-random u64.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Fill with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Overwrite `count` random regions of `img` with random, zero or compressible bytes.
pub fn mutate(img: &mut [u8], rng: &mut Rng, count: usize) {
    for _ in 0..count {
        let len = 1 + rng.below(200_000) as usize;
        let off = rng.below((img.len() - len) as u64) as usize;
        let region = &mut img[off..off + len];
        match rng.below(3) {
            0 => rng.fill(region),
            1 => region.fill(0),
            _ => {
                for (i, b) in region.iter_mut().enumerate() {
                    *b = b"lvmsync compressible text "[i % 26];
                }
            }
        }
    }
}

/// An image of `size` bytes: random data with zero holes and compressible runs.
pub fn make_image(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut img = vec![0u8; size];
    mutate(&mut img, &mut rng, 40);
    img
}

/// Ground truth change set: the `block`-sized blocks whose bytes differ (or that exist only
/// in `new`), computed by direct comparison.
pub fn diff_blocks(old: &[u8], new: &[u8], block: usize) -> ChangeSet {
    let mut ext = Vec::new();
    for start in (0..new.len()).step_by(block) {
        let end = (start + block).min(new.len());
        let o = old.get(start..end.min(old.len())).unwrap_or(&[]);
        if o != &new[start..end] {
            ext.push(Extent::new(
                start as u64,
                (end - start) as u64,
                ExtentKind::Changed,
            ));
        }
    }
    ChangeSet::from_extents(Bytes(block as u64), ext).unwrap()
}

/// Write `img` to `path`.
pub fn write(path: &Path, img: &[u8]) {
    std::fs::write(path, img).unwrap();
}

/// Send a delta from `old_path` (None: full) to `new_path` into `out`, with the library
/// pipeline and a change set from [`diff_blocks`].
pub fn send_delta(old_path: Option<&Path>, new_path: &Path, out: &Path) {
    let new = std::fs::read(new_path).unwrap();
    let (changes, base, base_size) = match old_path {
        Some(p) => {
            let old = std::fs::read(p).unwrap();
            let cs = diff_blocks(&old, &new, 65536);
            (
                cs,
                content_fingerprint(p, Bytes(old.len() as u64)).unwrap(),
                old.len(),
            )
        }
        None => (
            ChangeSet::from_extents(
                Bytes(65536),
                [Extent::new(0, new.len() as u64, ExtentKind::Changed)],
            )
            .unwrap(),
            Fingerprint::NONE,
            0,
        ),
    };
    let header = Header {
        source: new_path.display().to_string(),
        source_uuid: String::new(),
        device_size: Bytes(new.len() as u64),
        base_size: Bytes(base_size as u64),
        block_size: Bytes(65536),
        base,
        target: content_fingerprint(new_path, Bytes(new.len() as u64)).unwrap(),
        created_unix: 1,
        touched_bytes: changes.changed_bytes(),
    };
    let file = std::fs::File::create(out).unwrap();
    send_changes(
        new_path,
        &changes,
        &header,
        file,
        "test",
        EncodeOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
}

/// Run `lvmsync apply <delta> <dest> --state-dir <st>` plus `extra` args.
pub fn apply(delta: &Path, dest: &Path, st: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("apply")
        .arg(delta)
        .arg(dest)
        .arg("--state-dir")
        .arg(st)
        .args(["--progress", "none"])
        .args(extra)
        .output()
        .unwrap()
}

/// The resume token an interrupted resumable receive names in its error
/// (``... `lvmsync receive --resume <token>` ...``).
pub fn resume_token(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    err.split("--resume ")
        .nth(1)
        .and_then(|t| t.split('`').next())
        .unwrap_or_else(|| panic!("no resume token in {err}"))
        .to_string()
}

/// Run `lvmsync receive <dest>` with `stream` piped to stdin.
pub fn receive(stream: &[u8], dest: &Path, st: &Path, extra: &[&str]) -> Output {
    receive_env(stream, dest, st, extra, &[])
}

/// [`receive`] with crash-test hooks set ([`TestHook`]).
pub fn receive_env(
    stream: &[u8],
    dest: &Path,
    st: &Path,
    extra: &[&str],
    hooks: &[(&str, &str)],
) -> Output {
    use std::io::Write;
    let mut cmd = bin();
    for (var, value) in hooks {
        cmd.test_hook(var, value);
    }
    let mut child = cmd
        .arg("receive")
        .arg(dest)
        .arg("--state-dir")
        .arg(st)
        .args(["--progress", "none"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(stream); // the receiver may exit early on bad input
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// blake3 of a file's bytes, for "destination equals source" checks.
pub fn file_hash(p: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(p).unwrap())
}

/// A fresh temporary directory.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `dir/name`.
pub fn at(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// Assert an output succeeded, showing stderr otherwise.
pub fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "lvmsync failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A base image of `size` bytes (seeded by `image_seed`) and a target made from it by `edits`
/// random edits (seeded by `edit_seed`), written to `v0.img` and `v1.img` in `d`.
pub fn base_and_target(
    d: &tempfile::TempDir,
    size: usize,
    image_seed: u64,
    edit_seed: u64,
    edits: usize,
) -> (PathBuf, PathBuf) {
    let mut img = make_image(size, image_seed);
    let v0 = at(d, "v0.img");
    write(&v0, &img);
    let mut rng = Rng(edit_seed);
    for _ in 0..edits {
        mutate(&mut img, &mut rng, 1);
    }
    let v1 = at(d, "v1.img");
    write(&v1, &img);
    (v0, v1)
}

/// Run `lvmsync recover <dest> --state-dir <st>` and return its output.
pub fn recover(dest: &Path, st: &Path) -> Output {
    bin()
        .arg("recover")
        .arg(dest)
        .arg("--state-dir")
        .arg(st)
        .output()
        .unwrap()
}

/// `lvmsync send --base <old> <new> --to <to>` with 16 KiB blocks (`to`: a path or `-`).
pub fn send_base(old: &Path, new: &Path, to: impl AsRef<std::ffi::OsStr>) -> Output {
    bin()
        .args([
            "send",
            "--progress",
            "none",
            "--block-size",
            "16384",
            "--base",
        ])
        .arg(old)
        .arg(new)
        .arg("--to")
        .arg(to)
        .output()
        .unwrap()
}

/// `lvmsync send --base <v0> <v1> --to -` with 16 KiB blocks and a checkpoint every 256 KiB,
/// continuing after the checkpoint named by `resume`; returns the stream.
pub fn send_checkpointed(v0: &Path, v1: &Path, resume: Option<&str>) -> Vec<u8> {
    let mut cmd = bin();
    cmd.args(["send", "--progress", "none", "--block-size", "16384"])
        .args(["--checkpoint-every", "262144", "--base"])
        .arg(v0)
        .arg(v1)
        .args(["--to", "-"]);
    if let Some(t) = resume {
        cmd.args(["--resume", t]);
    }
    let out = cmd.output().unwrap();
    ok(&out);
    out.stdout
}

/// A tmpfs of `size` (e.g. "1m") mounted on `dir` (created), unmounted when dropped; `None`
/// (after a SKIP line) where no tmpfs can be mounted (not root).
pub fn small_tmpfs(dir: &Path, size: &str) -> Option<Tmpfs> {
    std::fs::create_dir(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIP: cannot mount a tmpfs here (not root?)");
        return None;
    }
    Some(Tmpfs(dir.to_path_buf()))
}

/// A mounted tmpfs, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
