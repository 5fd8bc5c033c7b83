//! Snapback: applies with `--snapback` keep their undo journals as a chain, and
//! `lvmsync rollback` walks the destination back through earlier states exactly, one step or
//! several, refusing when the destination is not at the chain's head.

mod stream_util;
use stream_util::*;

#[test]
fn rollback_restores_each_earlier_state() {
    let d = tmp();
    let (st, snap, dest) = (at(&d, "st"), at(&d, "snap"), at(&d, "dest.img"));
    let snap_arg = snap.to_str().unwrap().to_string();
    let mut img = make_image(3 << 20, 808);
    let mut rng = Rng(3);
    let mut versions = Vec::new();
    let mut prev: Option<std::path::PathBuf> = None;
    for step in 0..4 {
        if step > 0 {
            mutate(&mut img, &mut rng, 4);
        }
        let cur = at(&d, &format!("v{step}.img"));
        write(&cur, &img);
        let delta = at(&d, &format!("d{step}.lvd"));
        send_delta(prev.as_deref(), &cur, &delta);
        ok(&apply(&delta, &dest, &st, &["--snapback", &snap_arg]));
        versions.push(file_hash(&cur));
        prev = Some(cur);
    }
    let rollback = |extra: &[&str]| {
        bin()
            .arg("rollback")
            .arg(&dest)
            .args(["--progress", "none", "--snapback", &snap_arg, "--state-dir"])
            .arg(&st)
            .args(extra)
            .output()
            .unwrap()
    };
    let list = rollback(&["--list"]);
    ok(&list);
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 4);
    // One step: v3 -> v2.
    ok(&rollback(&[]));
    assert_eq!(file_hash(&dest), versions[2]);
    // Several steps: back through image 3 (it restores v1), the newest one left.
    ok(&rollback(&["--to", "3"]));
    assert_eq!(file_hash(&dest), versions[1]);
    // Image 2 restores v0.
    ok(&rollback(&["--to", "2"]));
    assert_eq!(file_hash(&dest), versions[0]);
    let list = rollback(&["--list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 1);
    // A destination changed behind lvmsync's back is refused (base check) and untouched.
    let mut f = std::fs::read(&dest).unwrap();
    f[0] ^= 1;
    std::fs::write(&dest, &f).unwrap();
    std::fs::remove_dir_all(&st).unwrap();
    let o = rollback(&[]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), f);
}

/// A rollback through a volume that shrank and grew again restores the larger, older state
/// exactly: S (12 MiB) full, T (8 MiB: the destination keeps S's tail past 8 MiB), then U
/// (12 MiB again, base size 8 MiB, so its grown part overwrites S's tail). Rolling back to S
/// goes through U's image, which must hold the old bytes past T's size too (an apply keeping
/// a snapback image journals everything it overwrites, never capped at the base's size).
#[test]
fn rollback_through_a_shrink_and_regrow_restores_the_tail() {
    let d = tmp();
    let (st, snap, dest) = (at(&d, "st"), at(&d, "snap"), at(&d, "dest.img"));
    let snap_arg = snap.to_str().unwrap().to_string();
    let s = make_image(12 << 20, 41);
    let mut t = s[..8 << 20].to_vec();
    mutate(&mut t, &mut Rng(42), 4);
    let mut u = make_image(12 << 20, 43);
    u[..8 << 20].copy_from_slice(&t);
    mutate(&mut u, &mut Rng(44), 4);
    let mut prev: Option<std::path::PathBuf> = None;
    for (name, img) in [("s", &s), ("t", &t), ("u", &u)] {
        let cur = at(&d, &format!("{name}.img"));
        write(&cur, img);
        let delta = at(&d, &format!("{name}.lvd"));
        send_delta(prev.as_deref(), &cur, &delta);
        ok(&apply(&delta, &dest, &st, &["--snapback", &snap_arg]));
        prev = Some(cur);
    }
    assert_eq!(file_hash(&dest), file_hash(&at(&d, "u.img")));
    let o = bin()
        .arg("rollback")
        .arg(&dest)
        .args(["--progress", "none", "--snapback", &snap_arg, "--state-dir"])
        .arg(&st)
        .args(["--to", "2"])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(
        file_hash(&dest),
        file_hash(&at(&d, "s.img")),
        "rolled back to S"
    );
}
