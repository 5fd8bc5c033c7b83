//! `lvmsync verify`: the listed ranges equal an independent block comparison, a difference
//! exits 4, `--repair` makes the destination equal the source through the journaled apply,
//! and a second verify finds nothing.

mod stream_util;
use stream_util::*;

#[test]
fn verify_lists_ground_truth_and_repair_fixes() {
    let d = tmp();
    let mut img = make_image(5 << 20, 4242);
    let dest = at(&d, "dest.img");
    write(&dest, &img);
    mutate(&mut img, &mut Rng(99), 7);
    let src = at(&d, "src.img");
    write(&src, &img);
    let run = |extra: &[&str]| {
        bin()
            .arg("verify")
            .arg(&src)
            .arg(&dest)
            .args(["--block-size", "16384", "--progress", "none", "--state-dir"])
            .arg(at(&d, "st"))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let listed: Vec<(u64, u64)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split(' ').map(|x| x.parse().unwrap());
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    let truth = diff_blocks(&std::fs::read(&dest).unwrap(), &img, 16384);
    let want: Vec<(u64, u64)> = truth
        .extents()
        .iter()
        .map(|e| (e.offset.0, e.length.0))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(listed, want);
    ok(&run(&["--repair"]));
    assert_eq!(file_hash(&dest), file_hash(&src));
    let again = run(&[]);
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("# 0 differing ranges"));
}
