//! Resume: a `--resumable` receive whose stream is cut keeps the verified part up to its last
//! durable checkpoint and prints a token; `send --resume <token>` sends only what follows and
//! `receive --resume` finishes it, exactly; a plain `recover` instead rolls the partial apply
//! back to exactly the base; a stream that does not continue from the checkpoint is refused,
//! and so is a resumed send planned with other options, before it sends anything.

mod stream_util;
use std::path::{Path, PathBuf};
use stream_util::*;

const SIZE: usize = 8 << 20;

struct Setup {
    d: tempfile::TempDir,
    v0: PathBuf,
    v1: PathBuf,
    dest: PathBuf,
    st: PathBuf,
}

fn setup() -> Setup {
    let d = tmp();
    let (v0, v1) = base_and_target(&d, SIZE, 0x5151, 0x77, 80);
    let (dest, st) = (at(&d, "dest.img"), at(&d, "st"));
    let full = at(&d, "full.lvd");
    send_delta(None, &v0, &full);
    ok(&apply(&full, &dest, &st, &[]));
    Setup {
        d,
        v0,
        v1,
        dest,
        st,
    }
}

fn send(s: &Setup, resume: Option<&str>) -> Vec<u8> {
    send_checkpointed(&s.v0, &s.v1, resume)
}

/// Receive a cut stream resumably; returns the token from the error.
fn cut_receive(s: &Setup, stream: &[u8]) -> String {
    let o = receive(stream, &s.dest, &s.st, &["--resumable"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(5), "{err}");
    let token = resume_token(&o);
    assert_eq!(token.len(), 128, "{err}");
    token
}

fn state_dir_has_journal(st: &Path) -> bool {
    std::fs::read_dir(st).unwrap().any(|e| {
        e.unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "journal")
    })
}

#[test]
fn cut_stream_resumes_without_resending_and_ends_exact() {
    let s = setup();
    let full = send(&s, None);
    assert!(full.len() > 1 << 20, "delta {} bytes", full.len());
    let token = cut_receive(&s, &full[..full.len() * 6 / 10]);
    assert!(state_dir_has_journal(&s.st));
    // What a listening receiver would offer a reconnecting sender is that same checkpoint.
    let paths = lvmsync::journal::DestPaths::new(&s.st, &s.dest).unwrap();
    assert_eq!(
        lvmsync::journal::resume::resume_point(&paths).unwrap(),
        Some(lvmsync::journal::resume::parse_token(&token).unwrap())
    );
    let rest = send(&s, Some(&token));
    assert!(
        rest.len() < full.len() * 6 / 10,
        "continuation {} of {} bytes",
        rest.len(),
        full.len()
    );
    ok(&receive(&rest, &s.dest, &s.st, &["--resume"]));
    assert_eq!(file_hash(&s.dest), file_hash(&s.v1));
    assert!(!state_dir_has_journal(&s.st));
    // The state file names v1: the next delta's base check passes on it.
    let again = receive(&send(&s, None), &s.dest, &s.st, &[]);
    assert_eq!(again.status.code(), Some(7));
}

#[test]
fn partial_apply_is_rolled_back_by_recover_and_bad_continuations_refused() {
    let s = setup();
    let full = send(&s, None);
    let token = cut_receive(&s, &full[..full.len() / 2]);
    // A whole (non-continuation) stream is not a continuation: refused, partial state kept.
    let o = receive(&full, &s.dest, &s.st, &["--resume"]);
    assert_eq!(o.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&token));
    assert!(state_dir_has_journal(&s.st));
    // A cut continuation keeps what it verified too, and can be resumed again.
    let rest = send(&s, Some(&token));
    let token2 = {
        let o = receive(&rest[..rest.len() / 2], &s.dest, &s.st, &["--resume"]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(5), "{err}");
        resume_token(&o)
    };
    assert_ne!(token, token2, "the second cut should have made progress");
    // Giving up: recover restores exactly the base.
    ok(&recover(&s.dest, &s.st));
    assert_eq!(file_hash(&s.dest), file_hash(&s.v0));
    assert!(!state_dir_has_journal(&s.st));
    let _ = &s.d;
}

/// A resumed send whose changes are not those of the interrupted one (here: --block-size
/// 4096 instead of 16384, so finer blocks) is refused before it connects: usage error (exit
/// 2) naming the options, no stream file, and the partial apply still resumable.
#[test]
fn a_resume_planned_with_other_options_is_refused_before_sending() {
    let s = setup();
    let full = send(&s, None);
    let token = cut_receive(&s, &full[..full.len() / 2]);
    let out = at(&s.d, "rest.lvd");
    let o = bin()
        .args(["send", "--progress", "none", "--block-size", "4096"])
        .arg("--base")
        .arg(&s.v0)
        .arg(&s.v1)
        .arg("--to")
        .arg(&out)
        .args(["--resume", &token])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("planned differently") && err.contains("--block-size"),
        "{err}"
    );
    assert!(!out.exists(), "a refused resume wrote {}", out.display());
    let rest = send(&s, Some(&token));
    ok(&receive(&rest, &s.dest, &s.st, &["--resume"]));
    assert_eq!(file_hash(&s.dest), file_hash(&s.v1));
}
