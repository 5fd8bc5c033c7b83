//! Round trips through the real binary: a full sync and several incremental deltas, via a
//! delta file (`apply`) and via a stdin pipe (`receive`); the destination must equal the
//! source image after each step, and the state file must carry the target fingerprint.

mod stream_util;
use lvmsync::stream::fingerprint::content_fingerprint;
use lvmsync::units::Bytes;
use stream_util::*;

const SIZE: usize = 6 << 20;

#[test]
fn full_then_incremental_deltas_via_file_and_stdin() {
    let d = tmp();
    let st = at(&d, "state");
    let dest = at(&d, "dest.img");
    let mut img = make_image(SIZE, 0x5eed);
    let mut rng = Rng(42);
    let mut prev: Option<std::path::PathBuf> = None;
    for step in 0..5 {
        let cur = at(&d, &format!("v{step}.img"));
        if step > 0 {
            mutate(&mut img, &mut rng, 6);
        }
        write(&cur, &img);
        let delta = at(&d, &format!("d{step}.lvd"));
        send_delta(prev.as_deref(), &cur, &delta);
        let out = if step % 2 == 0 {
            apply(&delta, &dest, &st, &[])
        } else {
            receive(&std::fs::read(&delta).unwrap(), &dest, &st, &[])
        };
        ok(&out);
        assert_eq!(file_hash(&dest), file_hash(&cur), "step {step}");
        let state = std::fs::read_dir(&st)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "state"))
            .unwrap();
        let fp = content_fingerprint(&cur, Bytes(SIZE as u64)).unwrap();
        assert!(std::fs::read_to_string(state)
            .unwrap()
            .contains(&fp.to_hex()));
        assert!(
            !std::fs::read_dir(&st).unwrap().any(|e| e
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "journal")),
            "journal left behind after a successful apply"
        );
        prev = Some(cur);
    }
}

#[test]
fn full_send_is_sparse_and_cli_send_round_trips() {
    let d = tmp();
    let src = at(&d, "src.img");
    let mut img = vec![0u8; 16 << 20];
    Rng(7).fill(&mut img[3 << 20..(3 << 20) + 100_000]);
    write(&src, &img);
    let delta = at(&d, "full.lvd");
    let out = bin()
        .args(["send", "--progress", "none", "--to"])
        .arg(&delta)
        .arg(&src)
        .output()
        .unwrap();
    ok(&out);
    // 100 kB of data in a 16 MiB image: the zero runs must not be in the stream.
    let len = std::fs::metadata(&delta).unwrap().len();
    assert!(
        len < 200_000,
        "full stream of a mostly-zero image is {len} bytes"
    );
    // Destination pre-filled with garbage: the zero records must really zero it.
    let dest = at(&d, "dest.img");
    let mut garbage = vec![0u8; 16 << 20];
    Rng(9).fill(&mut garbage);
    write(&dest, &garbage);
    ok(&apply(&delta, &dest, &at(&d, "st"), &[]));
    assert_eq!(file_hash(&dest), file_hash(&src));
}

#[test]
fn cli_send_to_stdout_pipes_into_receive() {
    let d = tmp();
    let src = at(&d, "src.img");
    write(&src, &make_image(3 << 20, 99));
    let out = bin()
        .args(["send", "--progress", "none", "--to", "-"])
        .arg(&src)
        .output()
        .unwrap();
    ok(&out);
    let dest = at(&d, "dest.img");
    ok(&receive(&out.stdout, &dest, &at(&d, "st"), &[]));
    assert_eq!(file_hash(&dest), file_hash(&src));
}

#[test]
fn dry_run_writes_nothing() {
    let d = tmp();
    let src = at(&d, "src.img");
    write(&src, &make_image(2 << 20, 5));
    let delta = at(&d, "full.lvd");
    send_delta(None, &src, &delta);
    let dest = at(&d, "dest.img");
    write(&dest, &vec![1u8; 2 << 20]);
    let before = file_hash(&dest);
    let out = apply(&delta, &dest, &at(&d, "st"), &["--dry-run"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("would write"));
    assert_eq!(file_hash(&dest), before);
}

#[test]
fn cli_send_base_delta_chain_through_pipe_and_file() {
    let d = tmp();
    let (st, dest) = (at(&d, "st"), at(&d, "dest.img"));
    let mut img = make_image(4 << 20, 0xabc);
    let mut rng = Rng(17);
    let v0 = at(&d, "v0.img");
    write(&v0, &img);
    ok(&bin()
        .args(["send", "--progress", "none", "--to"])
        .arg(at(&d, "full.lvd"))
        .arg(&v0)
        .output()
        .unwrap());
    ok(&apply(&at(&d, "full.lvd"), &dest, &st, &[]));
    let mut prev = v0;
    for step in 1..4 {
        mutate(&mut img, &mut rng, 5);
        let cur = at(&d, &format!("v{step}.img"));
        write(&cur, &img);
        let send = send_base(&prev, &cur, "-");
        ok(&send);
        // Only changed blocks travel: far less than the image.
        assert!(
            send.stdout.len() < img.len() / 2,
            "delta {} bytes",
            send.stdout.len()
        );
        ok(&receive(&send.stdout, &dest, &st, &[]));
        assert_eq!(file_hash(&dest), file_hash(&cur), "step {step}");
        prev = cur;
    }
}

#[test]
fn json_progress_and_send_dry_run() {
    let d = tmp();
    let src = at(&d, "src.img");
    write(&src, &make_image(2 << 20, 21));
    let plan = bin()
        .args(["send", "--dry-run", "--to"])
        .arg(at(&d, "never.lvd"))
        .arg(&src)
        .output()
        .unwrap();
    ok(&plan);
    assert!(String::from_utf8_lossy(&plan.stdout).starts_with("plan: 1 extents, 2097152 bytes"));
    assert!(!at(&d, "never.lvd").exists());
    let delta = at(&d, "full.lvd");
    send_delta(None, &src, &delta);
    let out = bin()
        .arg("apply")
        .arg(&delta)
        .arg(at(&d, "dest.img"))
        .arg("--state-dir")
        .arg(at(&d, "st"))
        .args(["--progress", "json"])
        .output()
        .unwrap();
    ok(&out);
    let last = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .next_back()
        .expect("JSON progress lines on stderr");
    assert_eq!(last["op"], "apply");
    assert_eq!(last["bytes"], last["total"]);
    assert!(last["rate_bytes_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn sparse_sources_send_their_holes_as_zero_records_and_round_trip() {
    use std::os::unix::fs::FileExt;
    let d = tmp();
    let (old, new) = (at(&d, "old.img"), at(&d, "new.img"));
    let mut data = vec![0u8; 300_000];
    Rng(11).fill(&mut data);
    // Old: a 64 MiB hole. New: data at 5 MiB and at an odd offset near 40 MiB, holes elsewhere.
    let size = 64u64 << 20;
    std::fs::File::create(&old).unwrap().set_len(size).unwrap();
    let f = std::fs::File::create(&new).unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(&data[..200_000], 5 << 20).unwrap();
    f.write_all_at(&data[200_000..], (40 << 20) + 123).unwrap();
    drop(f);
    let full = at(&d, "full.lvd");
    ok(&bin()
        .args(["send", "--progress", "none", "--to"])
        .arg(&full)
        .arg(&new)
        .output()
        .unwrap());
    let delta = at(&d, "delta.lvd");
    ok(&send_base(&old, &new, &delta));
    for stream in [&full, &delta] {
        let len = std::fs::metadata(stream).unwrap().len();
        assert!(len < 400_000, "{} is {len} bytes", stream.display());
    }
    // Full sync onto garbage: the hole records must really zero it.
    let dest = at(&d, "dest.img");
    let mut garbage = vec![0u8; size as usize];
    Rng(9).fill(&mut garbage);
    write(&dest, &garbage);
    ok(&apply(&full, &dest, &at(&d, "st"), &[]));
    assert_eq!(file_hash(&dest), file_hash(&new));
    // The delta applies to a copy of old (its base, checked by content).
    let dest2 = at(&d, "dest2.img");
    std::fs::File::create(&dest2)
        .unwrap()
        .set_len(size)
        .unwrap();
    ok(&apply(&delta, &dest2, &at(&d, "st2"), &[]));
    assert_eq!(file_hash(&dest2), file_hash(&new));
}
