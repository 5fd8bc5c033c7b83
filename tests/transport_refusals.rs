//! Mutual-TLS and protocol refusals: each must fail with a clear error on both sides, and the
//! receiver's `accept` must not hand anything over (it returns `Err`).

mod transport_support;

use lvmsync::transport::{
    connect, Allow, ConnectOptions, Dest, ListenUrl, Listener, ServerOptions, TlsFiles,
};
use std::io::Write;
use transport_support::*;

/// Connect as `who` to `scheme_url` (with `{addr}` filled in) and write a little; return the
/// client's error text and the server's `accept` error text.
fn refused(listen: &str, who: &str, url: &str) -> (String, String) {
    let pki = Pki::new();
    let (addr, server) = serve_one(bind(listen, &pki), Ok(()));
    let dest: Dest = url.replace("{addr}", &addr.to_string()).parse().unwrap();
    let opts = ConnectOptions {
        tls: pki.client(who),
        ..Default::default()
    };
    let client = match connect(&dest, &opts) {
        Err(e) => e.to_string(),
        Ok(mut conn) => {
            let _ = conn.write_all(b"must never reach the receiver");
            match conn.finish() {
                Err(e) => e.to_string(),
                Ok(o) => panic!("{url} as {who:?} was accepted: {o:?}"),
            }
        }
    };
    let server = match server.join().unwrap() {
        Err(e) => e.to_string(),
        Ok(r) => panic!("the receiver was handed a stream: {r:?}"),
    };
    eprintln!("{url} as {who:?}:\n  sender:   {client}\n  receiver: {server}");
    (client, server)
}

fn assert_has(text: &str, any_of: &[&str]) {
    assert!(
        any_of.iter().any(|w| text.contains(w)),
        "{text:?} lacks any of {any_of:?}"
    );
}

#[test]
fn tls_client_without_certificate() {
    let (client, server) = refused("tls://127.0.0.1:0", "", "tls://{addr}/vm1");
    assert_has(
        &client,
        &["requires a client certificate: pass --cert and --key"],
    );
    assert_has(
        &server,
        &["the client sent no certificate (it needs --cert and --key)"],
    );
}

#[test]
fn tls_client_with_untrusted_certificate() {
    let (client, server) = refused("tls://127.0.0.1:0", "rogue", "tls://{addr}/vm1");
    assert_has(
        &client,
        &["does not trust the CA that signed our certificate"],
    );
    assert_has(&server, &["not signed by the CA this side trusts"]);
}

#[test]
fn plaintext_client_on_tls_port() {
    let (client, server) = refused("tls://127.0.0.1:0", "client", "tcp://{addr}/vm1");
    assert_has(
        &client,
        &[
            "did not answer in the lvmsync transport protocol",
            "no answer",
        ],
    );
    assert_has(
        &server,
        &["did not speak TLS (a plaintext client on a TLS port?)"],
    );
}

#[test]
fn unknown_name_is_refused() {
    for scheme in ["tcp", "tls", "quic"] {
        let (client, server) = refused(
            &format!("{scheme}://127.0.0.1:0"),
            "client",
            &format!("{scheme}://{{addr}}/not-allowed"),
        );
        assert_has(&client, &["refused: no destination named \"not-allowed\""]);
        assert_has(&server, &["refused: no destination named \"not-allowed\""]);
    }
}

#[test]
fn quic_client_without_or_with_untrusted_certificate() {
    let (client, server) = refused("quic://127.0.0.1:0", "", "quic://{addr}/vm1");
    assert_has(
        &client,
        &["the server requires a client certificate: pass --cert and --key"],
    );
    assert_has(
        &server,
        &["QUIC connection refused", "the client sent no certificate"],
    );
    let (client, server) = refused("quic://127.0.0.1:0", "rogue", "quic://{addr}/vm1");
    assert_has(
        &client,
        &["the peer does not trust the CA that signed our certificate"],
    );
    assert_has(&server, &["not signed by the CA this side trusts"]);
}

#[test]
fn server_certificate_must_match_the_host() {
    // The server certificate names localhost, 127.0.0.1 and ::1 only; 127.0.0.2 is another name.
    let (client, server) = refused("tls://127.0.0.2:0", "client", "tls://{addr}/vm1");
    assert_has(&client, &["does not name the host in the URL"]);
    assert_has(&server, &["the peer rejected our certificate"]);
}

#[test]
fn setup_mistakes_are_named() {
    let pki = Pki::new();
    let url: ListenUrl = "tls://127.0.0.1:0".parse().unwrap();
    let allow = vec!["vm1=/dev/x".parse::<Allow>().unwrap()];
    let bind_err = |tls: TlsFiles, allow: Vec<Allow>| match Listener::bind(
        &url,
        &ServerOptions { tls, allow },
    ) {
        Ok(_) => panic!("bound"),
        Err(e) => e.to_string(),
    };
    let mut tls = pki.server();
    tls.cert = Some(pki.path("missing.pem"));
    let msg = bind_err(tls, allow.clone());
    assert!(
        msg.contains("missing.pem") && msg.contains("cannot read certificates"),
        "{msg}"
    );
    let mut tls = pki.server();
    tls.key = Some(pki.path("ca.pem")); // a certificate where the key should be
    let msg = bind_err(tls, allow.clone());
    assert!(
        msg.contains("ca.pem") && msg.contains("private key"),
        "{msg}"
    );
    let mut tls = pki.server();
    tls.ca = None;
    assert!(bind_err(tls, allow).contains("--client-ca"));
    assert!(bind_err(pki.server(), Vec::new()).contains("--allow"));
    for bad in ["vm1", "=/dev/x", "vm1=", "../x=/dev/x"] {
        let msg = bad.parse::<Allow>().unwrap_err().to_string();
        assert!(msg.contains("--allow"), "{bad}: {msg}");
    }
    let msg = "tcp://0.0.0.0:7000"
        .parse::<ListenUrl>()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("only allowed to a loopback"), "{msg}");
}

#[test]
fn tls_client_on_plaintext_port() {
    let (client, server) = refused("tcp://127.0.0.1:0", "client", "tls://{addr}/vm1");
    assert_has(
        &client,
        &["closed the connection during the TLS handshake (not a TLS port?)"],
    );
    assert_has(&server, &["a tls:// client on a plaintext tcp:// port?"]);
}
