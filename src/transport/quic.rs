//! quic://: quinn over UDP with the same mutual-TLS certificates, behind a blocking API.
//!
//! The rest of lvmsync is synchronous, so a small tokio runtime (one worker) lives inside each
//! endpoint and every read or write is a `block_on` on it. One bidirectional stream carries the
//! control channel and the main byte stream exactly as on tls://; a sender may open extra
//! unidirectional *lanes* (each starting with a `Lane(i)` frame) to move records in parallel.

use super::duplex::{Duplex, WriteHalf};
use super::frame::{read_control, Control};
use super::tls::explain_io;
use crate::{Error, Result};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

/// How long a close waits for the peer to take the last bytes.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

fn runtime() -> io::Result<Arc<Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("lvmsync-quic")
        .enable_all()
        .build()
        .map(Arc::new)
}

/// Flow-control windows: per stream and per connection (all lanes together). They bound what
/// the receiver buffers while it waits for the lane whose turn it is (docs/transport.md).
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // MTU discovery may probe past Ethernet's 1452 bytes: paths that carry bigger datagrams
    // (loopback, jumbo frames) then cost far fewer packets per byte; elsewhere the probes are
    // simply lost and the size stays where it was.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(u16::MAX);
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW))
        .receive_window(quinn::VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(CONNECTION_WINDOW.into())
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_LANES as u32))
        .mtu_discovery_config(Some(mtu))
        .keep_alive_interval(Some(Duration::from_secs(5)));
    Arc::new(t)
}

/// Most extra lanes a receiver accepts on one connection.
pub const MAX_LANES: u16 = 64;

fn to_io(e: impl Into<io::Error>) -> io::Error {
    explain_io(e.into())
}

fn quic_err(endpoint: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport {
        endpoint: endpoint.to_string(),
        detail: format!("QUIC: {e}"),
    }
}

/// Keeps a runtime, endpoint and connection alive; closing it says goodbye to the peer.
pub struct QuicKeep {
    rt: Arc<Runtime>,
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl QuicKeep {
    /// Accept `count` lanes and return their readers in lane order (positioned after `Lane`).
    pub fn accept_lanes(
        &self,
        count: u16,
        timeout: Duration,
    ) -> io::Result<Vec<Box<dyn Read + Send>>> {
        let rt = self.rt.handle().clone();
        let mut lanes: Vec<Option<Box<dyn Read + Send>>> = (0..count).map(|_| None).collect();
        for _ in 0..count {
            let r = rt
                .block_on(async { tokio::time::timeout(timeout, self.conn.accept_uni()).await })
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for a lane")
                })?
                .map_err(|e| io::Error::other(describe_conn(&e)))?;
            let mut read = io::BufReader::with_capacity(64 * 1024, QuicRead { rt: rt.clone(), r });
            match read_control(&mut read)? {
                Control::Lane(i) if i < count && lanes[i as usize].is_none() => {
                    lanes[i as usize] = Some(Box::new(read));
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad lane announcement {other:?}"),
                    ))
                }
            }
        }
        Ok(lanes.into_iter().flatten().collect())
    }

    /// Open lane `index`: an extra one-way stream announced by a `Lane` frame.
    pub fn open_lane(&self, index: u16) -> io::Result<Box<dyn WriteHalf>> {
        let rt = self.rt.handle().clone();
        let s = rt
            .block_on(self.conn.open_uni())
            .map_err(|e| io::Error::other(describe_conn(&e)))?;
        let mut w = QuicWrite { rt, s };
        w.write_all(&Control::Lane(index).encode())?;
        Ok(Box::new(w))
    }
}

impl Drop for QuicKeep {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"done");
        let ep = self.endpoint.clone();
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(CLOSE_WAIT, ep.wait_idle()).await });
    }
}

struct QuicWrite {
    rt: Handle,
    s: quinn::SendStream,
}

impl Write for QuicWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.rt.block_on(self.s.write(buf)) {
            Ok(n) => Ok(n),
            Err(quinn::WriteError::ConnectionLost(e)) => Err(lost(&e)),
            Err(e) => Err(to_io(e)),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteHalf for QuicWrite {
    fn close(&mut self) -> io::Result<()> {
        if self.s.finish().is_ok() {
            let stopped = self.s.stopped();
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(CLOSE_WAIT, stopped).await });
        }
        Ok(())
    }
}

struct QuicRead {
    rt: Handle,
    r: quinn::RecvStream,
}

impl Read for QuicRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.rt.block_on(self.r.read(buf)) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Ok(0),
            Err(quinn::ReadError::ConnectionLost(e)) => Err(lost(&e)),
            Err(e) => Err(to_io(e)),
        }
    }
}

/// A lost connection, with the reason the peer gave (a refused certificate, for instance).
fn lost(e: &quinn::ConnectionError) -> io::Error {
    // Code 0 is how a side that has finished closes (`QuicKeep`'s "done"): `NotConnected`
    // lets a caller that is done too tell that apart from a failure.
    let kind = match e {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == 0u32.into() => {
            io::ErrorKind::NotConnected
        }
        _ => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, describe_conn(e))
}

fn duplex(
    rt: &Handle,
    conn: &quinn::Connection,
    s: quinn::SendStream,
    r: quinn::RecvStream,
) -> Duplex {
    Duplex {
        read: Box::new(io::BufReader::with_capacity(
            64 * 1024,
            QuicRead { rt: rt.clone(), r },
        )),
        write: Box::new(QuicWrite { rt: rt.clone(), s }),
        peer: conn.remote_address().to_string(),
    }
}

/// A client connection: the main stream's halves and what keeps the connection open.
pub struct QuicClient {
    /// The bidirectional control + main data stream.
    pub duplex: Duplex,
    /// Runtime, endpoint and connection; drop after the streams.
    pub keep: QuicKeep,
}

impl QuicClient {
    /// Connect to `addrs` (first that answers) and open the main stream.
    pub fn connect(
        endpoint: &str,
        addrs: &[SocketAddr],
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let rt = runtime().map_err(|e| quic_err(endpoint, e))?;
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| quic_err(endpoint, e))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport_config());
        let mut last = quic_err(endpoint, "no address to connect to");
        for addr in addrs {
            let bind: SocketAddr = if addr.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            }
            .parse()
            .expect("literal address");
            let attempt = rt.block_on(async {
                let ep = quinn::Endpoint::client(bind).map_err(|e| e.to_string())?;
                let connecting = ep
                    .connect_with(config.clone(), *addr, server_name)
                    .map_err(|e| e.to_string())?;
                let conn = connecting.await.map_err(|e| describe_conn(&e))?;
                let (s, r) = conn.open_bi().await.map_err(|e| describe_conn(&e))?;
                Ok::<_, String>((ep, conn, s, r))
            });
            match attempt {
                Ok((ep, conn, s, r)) => {
                    let duplex = duplex(rt.handle(), &conn, s, r);
                    let keep = QuicKeep {
                        rt,
                        endpoint: ep,
                        conn,
                    };
                    return Ok(QuicClient { duplex, keep });
                }
                Err(e) => last = quic_err(endpoint, format!("{addr}: {e}")),
            }
        }
        Err(last)
    }
}

/// Describe a connection error, explaining TLS failures (missing or untrusted certificates)
/// from this side's point of view: `aborted by peer` means the other side refused us.
fn describe_conn(e: &quinn::ConnectionError) -> String {
    let text = e.to_string();
    let by_peer = matches!(e, quinn::ConnectionError::ConnectionClosed(_));
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let hint = match (by_peer, text.as_str()) {
        (true, _) if has(&["CertificateRequired", "no certificates"]) => {
            "the server requires a client certificate: pass --cert and --key"
        }
        (false, _) if has(&["no certificates"]) => "the client sent no certificate (--cert and --key)",
        (true, _) if has(&["UnknownIssuer", "UnknownCA", "BadCertificate"]) => {
            "the peer does not trust the CA that signed our certificate (check its --ca / --client-ca)"
        }
        (false, _) if has(&["UnknownIssuer", "BadSignature"]) => {
            "the peer's certificate is not signed by the CA this side trusts (--ca / --client-ca)"
        }
        (_, _) if has(&["NotValidForName"]) => "the server's certificate does not name the host in the URL",
        _ => "",
    };
    if hint.is_empty() {
        text
    } else {
        format!("{text}: {hint}")
    }
}

/// The receiving side: a bound QUIC endpoint.
pub struct QuicServer {
    rt: Arc<Runtime>,
    endpoint: quinn::Endpoint,
}

/// An accepted QUIC connection after its main stream arrived.
pub struct QuicAccepted {
    /// The main stream.
    pub duplex: Duplex,
    /// Keeps the connection alive until the receiver is done.
    pub keep: QuicKeep,
}

impl QuicServer {
    /// Bind `addr` with the server's TLS configuration.
    pub fn bind(addr: SocketAddr, tls: Arc<rustls::ServerConfig>) -> Result<Self> {
        let name = format!("quic://{addr}");
        let rt = runtime().map_err(|e| quic_err(&name, e))?;
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| quic_err(&name, e))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport_config());
        let endpoint = {
            let _guard = rt.enter();
            quinn::Endpoint::server(config, addr).map_err(|e| quic_err(&name, e))?
        };
        Ok(QuicServer { rt, endpoint })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Wait for the next connection and its main stream; TLS refusals come back as errors.
    pub fn accept(&self, timeout: Duration) -> Result<QuicAccepted> {
        let name = format!(
            "quic://{}",
            self.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        let incoming = self
            .rt
            .block_on(self.endpoint.accept())
            .ok_or_else(|| quic_err(&name, "endpoint closed"))?;
        let peer = incoming.remote_address();
        let got = self.rt.block_on(async {
            tokio::time::timeout(timeout, async {
                let conn = incoming.await.map_err(|e| describe_conn(&e))?;
                let (s, r) = conn.accept_bi().await.map_err(|e| describe_conn(&e))?;
                Ok::<_, String>((conn, s, r))
            })
            .await
            .unwrap_or_else(|_| Err("timed out waiting for the client's first stream".into()))
        });
        let (conn, s, r) = got.map_err(|e| Error::Transport {
            endpoint: format!("client {peer}"),
            detail: format!("QUIC connection refused: {e}"),
        })?;
        Ok(QuicAccepted {
            duplex: duplex(self.rt.handle(), &conn, s, r),
            keep: QuicKeep {
                rt: self.rt.clone(),
                endpoint: self.endpoint.clone(),
                conn,
            },
        })
    }
}
