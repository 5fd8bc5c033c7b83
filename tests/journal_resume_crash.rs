//! Crash safety of resume: `kill -9` a `receive --resume` at many random points; after
//! `lvmsync recover` the destination is exactly the base (the partial apply and its
//! continuation undone) or exactly the target (the continuation had committed).
//! Uses the test-only `LVMSYNC_TEST_SLOW_MS` hook (see tests/journal_crash.rs).

mod stream_util;
use std::process::Stdio;
use std::time::{Duration, Instant};
use stream_util::*;

#[test]
fn kill_9_during_resumed_apply_leaves_base_or_target() {
    let d = tmp();
    let (v0, v1) = base_and_target(&d, 8 << 20, 0x4242, 0x99, 80);
    let (dest, st, tpl) = (at(&d, "dest.img"), at(&d, "st"), at(&d, "tpl"));
    let full = at(&d, "full.lvd");
    send_delta(None, &v0, &full);
    ok(&apply(&full, &dest, &tpl, &[]));
    let send = |resume: Option<&str>| send_checkpointed(&v0, &v1, resume);
    let stream = send(None);
    let cut = &stream[..stream.len() / 3];
    let reset = || {
        std::fs::copy(&v0, &dest).unwrap();
        let _ = std::fs::remove_dir_all(&st);
        std::fs::create_dir(&st).unwrap();
        for e in std::fs::read_dir(&tpl).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, st.join(p.file_name().unwrap())).unwrap();
        }
        resume_token(&receive(cut, &dest, &st, &["--resumable"]))
    };
    let token = reset();
    let rest = at(&d, "rest.lvd");
    std::fs::write(&rest, send(Some(&token))).unwrap();
    let spawn = || {
        bin()
            .args(["receive", "--resume", "--progress", "none", "--state-dir"])
            .arg(&st)
            .arg(&dest)
            .test_hook("LVMSYNC_TEST_SLOW_MS", "2")
            .stdin(std::fs::File::open(&rest).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    reset();
    let t = Instant::now();
    assert!(spawn().wait().unwrap().success());
    let full_ms = t.elapsed().as_millis() as u64;
    assert_eq!(file_hash(&dest), file_hash(&v1));
    let (h0, h1) = (file_hash(&v0), file_hash(&v1));
    let mut rng = Rng(0x99);
    let mut mid = 0;
    for i in 0..200 {
        assert_eq!(
            reset(),
            token,
            "the cut stream reaches the same checkpoint every time"
        );
        let mut child = spawn();
        let at_ms = rng.below(full_ms * 11 / 10 + 1);
        std::thread::sleep(Duration::from_millis(at_ms));
        if child.try_wait().unwrap().is_none() {
            mid += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        ok(&recover(&dest, &st));
        let h = file_hash(&dest);
        assert!(
            h == h0 || h == h1,
            "kill #{i} at {at_ms} ms: neither base nor target"
        );
        if mid >= 20 {
            break;
        }
    }
    assert!(mid >= 20, "only {mid} kills landed mid-resume");
}
