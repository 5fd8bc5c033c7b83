//! tcp://, tls:// and quic:// end to end on loopback (IPv4 and IPv6): a few MiB move through
//! each and the receiver's blake3 must equal the sender's; the receiver's verdict (with its
//! error class, or without one as older receivers send it) and
//! checkpoint acks come back; quic:// striped over 0-6 extra lanes arrives whole and in
//! order; a cut connection is an error on the receiver, not a short stream.

mod transport_support;

use lvmsync::transport::{
    connect, connect_lanes, stripe, Conn, ConnectOptions, Dest, Failure, QUIC_LANES,
};
use lvmsync::ErrorClass;
use std::io::Write;
use transport_support::*;

const MIB: usize = 1 << 20;

fn opts(pki: &Pki, who: &str) -> ConnectOptions {
    ConnectOptions {
        tls: pki.client(who),
        ..Default::default()
    }
}

/// Write `data` in growing, uneven pieces (1, 10, 37, ... bytes).
fn write_uneven(conn: &mut dyn Conn, data: &[u8]) {
    let mut rest = data;
    let mut step = 1;
    while !rest.is_empty() {
        let n = step.min(rest.len());
        conn.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
        step = step * 3 + 7;
    }
}

/// Send `data` to `scheme` on `bind_host`, in uneven writes; check both ends.
fn round_trip(scheme: &str, bind_host: &str) {
    let pki = Pki::new();
    let listener = bind(&format!("{scheme}://{bind_host}:0"), &pki);
    let (addr, server) = serve_one(listener, Ok(()));
    let data = test_bytes(scheme, 5 * MIB + 12345);
    let dest: Dest = format!("{scheme}://{}/vm1", hostport(addr))
        .parse()
        .unwrap();
    let mut conn = connect(&dest, &opts(&pki, "client")).unwrap();
    write_uneven(conn.as_mut(), &data);
    let outcome = conn.finish().unwrap();
    assert_eq!(
        outcome.last_checkpoint.as_deref(),
        Some(&b"checkpoint 7"[..])
    );
    let got = server.join().unwrap().unwrap();
    assert_eq!(got.name, "vm1");
    assert_eq!(got.device, std::path::Path::new("/dev/test-vm1"));
    assert_eq!(got.len, data.len() as u64);
    assert_eq!(got.hash, blake3::hash(&data), "{scheme} on {bind_host}");
}

#[test]
fn tcp_ipv4_and_ipv6() {
    round_trip("tcp", "127.0.0.1");
    round_trip("tcp", "[::1]");
}

#[test]
fn tls_ipv4_and_ipv6() {
    round_trip("tls", "127.0.0.1");
    round_trip("tls", "[::1]");
}

#[test]
fn quic_ipv4_and_ipv6() {
    round_trip("quic", "127.0.0.1");
    round_trip("quic", "[::1]");
}

#[test]
fn quic_stripes_one_stream_over_parallel_lanes() {
    let pki = Pki::new();
    // 9 units and a bit: every lane carries several units, the last one partial.
    let data = test_bytes("striped", 9 * stripe::UNIT + 4321);
    for lanes in [0, 1, QUIC_LANES, 6] {
        let (addr, server) = serve_one(bind("quic://127.0.0.1:0", &pki), Ok(()));
        let Dest::Net(nd) = format!("quic://{addr}/vm1").parse().unwrap() else {
            unreachable!()
        };
        let mut conn = Box::new(connect_lanes(&nd, &opts(&pki, "client"), lanes).unwrap());
        write_uneven(conn.as_mut(), &data);
        conn.finish().unwrap();
        let got = server.join().unwrap().unwrap();
        assert_eq!(got.len, data.len() as u64, "{lanes} lanes");
        assert_eq!(got.hash, blake3::hash(&data), "{lanes} lanes");
    }
}

#[test]
fn receiver_failure_reaches_the_sender_with_its_class() {
    let pki = Pki::new();
    // A receiver's classified failure, and one from a receiver older than the Class frame.
    let cases = [
        (Some(ErrorClass::BaseMismatch), ErrorClass::BaseMismatch),
        (None, ErrorClass::Transport),
    ];
    for scheme in ["tcp", "tls", "quic"] {
        for (sent, want) in cases {
            let listener = bind(&format!("{scheme}://127.0.0.1:0"), &pki);
            let failure = Failure {
                class: sent,
                text: "base mismatch on /dev/test-vm1".into(),
            };
            let (addr, server) = serve_one(listener, Err(failure));
            let dest: Dest = format!("{scheme}://{addr}/vm1").parse().unwrap();
            let mut conn = connect(&dest, &opts(&pki, "client")).unwrap();
            conn.write_all(&test_bytes("x", 1000)).unwrap();
            let err = conn.finish().unwrap_err();
            assert_eq!(err.class(), want, "{scheme} {sent:?}: {err}");
            let err = err.to_string();
            assert_eq!(
                err.matches("the receiver failed: base mismatch on /dev/test-vm1")
                    .count(),
                1,
                "{err}"
            );
            assert!(
                err.contains(&addr.port().to_string()),
                "names the destination: {err}"
            );
            server.join().unwrap().unwrap();
        }
    }
}

#[test]
fn cut_connection_is_an_error_not_a_short_stream() {
    let pki = Pki::new();
    for scheme in ["tcp", "tls", "quic"] {
        let listener = bind(&format!("{scheme}://127.0.0.1:0"), &pki);
        let (addr, server) = serve_one(listener, Ok(()));
        let dest: Dest = format!("{scheme}://{addr}/vm1").parse().unwrap();
        let mut conn = connect(&dest, &opts(&pki, "client")).unwrap();
        conn.write_all(&test_bytes("cut", 3 * MIB)).unwrap();
        drop(conn); // sender dies without ending the stream
        let err = server.join().unwrap().unwrap_err().to_string();
        // QUIC's goodbye (CONNECTION_CLOSE) is one unacknowledged datagram: on a CPU-starved
        // machine the receiver's socket can drop it while its thread waits for a core, and
        // then the receiver learns of the cut from its idle timeout instead (still an error,
        // never a short stream taken as whole; reproduced under three busy loops on 2 cores).
        let timed_out = scheme == "quic" && err.contains("timed out");
        assert!(
            err.contains("closed") || err.contains("lost") || err.contains("reset") || timed_out,
            "{scheme}: {err}"
        );
    }
}

#[test]
fn accept_carries_the_receivers_resume_point() {
    let pki = Pki::new();
    for scheme in ["tcp", "tls", "quic"] {
        // With a lookup: the receiver's checkpoint for the mapped device reaches the sender.
        let listener =
            bind(&format!("{scheme}://127.0.0.1:0"), &pki).with_resume_points(Box::new(|dev| {
                (dev == std::path::Path::new("/dev/test-vm1")).then(|| b"cp 42".to_vec())
            }));
        let (addr, server) = serve_one(listener, Ok(()));
        let dest: Dest = format!("{scheme}://{addr}/vm1").parse().unwrap();
        let conn = connect(&dest, &opts(&pki, "client")).unwrap();
        assert_eq!(conn.resume_point(), Some(&b"cp 42"[..]), "{scheme}");
        conn.finish().unwrap();
        server.join().unwrap().unwrap();
        // Without: nothing to resume.
        let (addr, server) = serve_one(bind(&format!("{scheme}://127.0.0.1:0"), &pki), Ok(()));
        let dest: Dest = format!("{scheme}://{addr}/vm1").parse().unwrap();
        let conn = connect(&dest, &opts(&pki, "client")).unwrap();
        assert_eq!(conn.resume_point(), None);
        conn.finish().unwrap();
        server.join().unwrap().unwrap();
    }
}

#[test]
fn receiver_giving_up_mid_stream_is_explained_to_the_writer() {
    let pki = Pki::new();
    for scheme in ["tcp", "tls", "quic"] {
        let listener = bind(&format!("{scheme}://127.0.0.1:0"), &pki);
        let addr = listener.local_addr();
        let server = std::thread::spawn(move || {
            let mut s = listener.accept().unwrap();
            let mut first = vec![0u8; 1 << 20];
            std::io::Read::read_exact(&mut s.data, &mut first).unwrap();
            s.acks
                .finish(Err(Failure::new(
                    ErrorClass::Destination,
                    "/dev/test-vm1: header says 4 GiB, device has 1 GiB",
                )))
                .unwrap();
        });
        let dest: Dest = format!("{scheme}://{addr}/vm1").parse().unwrap();
        let mut conn = connect(&dest, &opts(&pki, "client")).unwrap();
        let chunk = test_bytes("big", MIB);
        let err = (0..256)
            .find_map(|_| conn.write_all(&chunk).err())
            // As the stream writer wraps a write error: the receiver's error comes out whole.
            .map(|e| lvmsync::Error::io("unused", e))
            .unwrap_or_else(|| conn.finish().unwrap_err());
        assert_eq!(err.class(), ErrorClass::Destination, "{scheme}: {err}");
        assert!(
            err.to_string()
                .contains("header says 4 GiB, device has 1 GiB"),
            "{scheme}: {err}"
        );
        server.join().unwrap();
    }
}
