//! The undo journal must fit: with the state directory on a 1 MiB tmpfs, a delta that
//! overwrites 4 MiB is refused before anything is written (exit 4), and the destination is
//! untouched. Needs root to mount the tmpfs (CI and the dev machines run as root).

mod stream_util;
use stream_util::*;

#[test]
fn journal_that_does_not_fit_is_refused_before_writing() {
    let d = tmp();
    let small = at(&d, "small");
    let Some(_guard) = small_tmpfs(&small, "1m") else {
        return;
    };
    let mut old = vec![0u8; 4 << 20];
    Rng(11).fill(&mut old);
    let dest = at(&d, "dest.img");
    write(&dest, &old);
    let mut new = vec![0u8; 4 << 20];
    Rng(12).fill(&mut new);
    let src = at(&d, "src.img");
    write(&src, &new);
    let delta = at(&d, "full.lvd");
    send_delta(None, &src, &delta);
    let o = apply(&delta, &dest, &small, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("journal directory has"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), old);
    // The same delta fits with the state directory on the big filesystem.
    ok(&apply(&delta, &dest, &at(&d, "st"), &[]));
    assert_eq!(std::fs::read(&dest).unwrap(), new);
}
