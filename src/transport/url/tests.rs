//! Unit tests for destination/listen URL parsing.

use super::*;
use proptest::prelude::*;

fn dest(s: &str) -> Dest {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn refused(s: &str) -> String {
    match s.parse::<Dest>() {
        Ok(d) => panic!("{s} parsed as {d:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn stdout_and_files() {
    assert_eq!(dest("-"), Dest::Stdout);
    assert_eq!(dest("/tmp/x.delta"), Dest::File("/tmp/x.delta".into()));
    assert_eq!(dest("rel/x"), Dest::File("rel/x".into()));
}

#[test]
fn ssh_forms() {
    assert_eq!(
        dest("ssh://root@backup:2222/dev/vg0/lv"),
        Dest::Ssh {
            user: Some("root".into()),
            host: "backup".into(),
            port: Some(2222),
            path: "/dev/vg0/lv".into()
        }
    );
    assert_eq!(
        dest("ssh://[::1]/srv/img"),
        Dest::Ssh {
            user: None,
            host: "::1".into(),
            port: None,
            path: "/srv/img".into()
        }
    );
    assert!(refused("ssh://host").contains("missing the remote device"));
    assert!(refused("ssh://@host/x").contains("empty user"));
}

#[test]
fn network_forms() {
    let d = dest("tls://[::1]:7000/vm1");
    assert_eq!(
        d,
        Dest::Net(NetDest {
            scheme: Scheme::Tls,
            host: "::1".into(),
            port: 7000,
            name: "vm1".into()
        })
    );
    let Dest::Net(n) = d else { unreachable!() };
    assert_eq!(n.to_string(), "tls://[::1]:7000/vm1");
    assert!(
        matches!(dest("quic://backup.example:9/a.b-c_d"), Dest::Net(n) if n.scheme == Scheme::Quic)
    );
    assert!(refused("tls://host/vm1").contains("missing :port"));
    assert!(refused("tls://host:70000/vm1").contains("bad port"));
    assert!(refused("tls://host:7/").contains("destination name"));
    assert!(refused("tls://host:7/../etc").contains("destination name"));
    assert!(refused("ftp://host/x").contains("unknown scheme"));
}

#[test]
fn tcp_is_loopback_only() {
    assert!(matches!(dest("tcp://127.0.0.1:5/x"), Dest::Net(_)));
    assert!(matches!(dest("tcp://127.3.4.5:5/x"), Dest::Net(_)));
    assert!(matches!(dest("tcp://[::1]:5/x"), Dest::Net(_)));
    for host in ["10.0.0.1", "[2001:db8::1]", "example.com", "0.0.0.0"] {
        let msg = refused(&format!("tcp://{host}:5/x"));
        assert!(msg.contains("only allowed to a loopback"), "{msg}");
    }
}

#[test]
fn listen_urls() {
    let l: ListenUrl = "tls://127.0.0.1:0".parse().unwrap();
    assert_eq!(l.scheme, Scheme::Tls);
    assert_eq!(l.addr, "127.0.0.1:0".parse().unwrap());
    let l: ListenUrl = "quic://[::]:4433".parse().unwrap();
    assert_eq!(l.addr, "[::]:4433".parse().unwrap());
    assert!("tcp://0.0.0.0:1".parse::<ListenUrl>().is_err());
    assert!("tcp://[::1]:1".parse::<ListenUrl>().is_ok());
    assert!("ssh://host:1".parse::<ListenUrl>().is_err());
    assert!("tls://127.0.0.1".parse::<ListenUrl>().is_err());
}

proptest! {
    /// Any string parses or fails cleanly; what parses as a network URL prints back the same.
    #[test]
    fn never_panics(s in "\\PC{0,40}", t in "(tls|quic|tcp|ssh)://[a-z0-9:\\[\\]@./]{0,30}") {
        let _ = s.parse::<Dest>();
        let _ = s.parse::<ListenUrl>();
        if let Ok(Dest::Net(n)) = t.parse::<Dest>() {
            prop_assert_eq!(n.to_string().parse::<Dest>().unwrap(), Dest::Net(n));
        }
        let _ = t.parse::<ListenUrl>();
    }
}
