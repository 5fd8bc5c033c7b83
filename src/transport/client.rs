//! The sender's entry points: [`connect`] any destination, or [`connect_lanes`] for a QUIC
//! connection striped over a chosen number of parallel streams.

use super::channel::{Channel, FramedChannel};
use super::conn::{say_hello, Conn, FileConn, NetConn};
use super::duplex::{self, Duplex};
use super::frame::{Control, DataReader};
use super::quic::{QuicClient, MAX_LANES};
use super::ssh::{self, SshConn, SshOptions};
use super::tls;
use super::tlsconf::{self, TlsFiles};
use super::url::{Dest, NetDest, Scheme};
use crate::{Error, Result};
use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Everything a sender may need besides the destination URL.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Certificates for tls:// and quic:// (`--cert`, `--key`, `--ca`).
    pub tls: TlsFiles,
    /// How to run ssh for ssh:// destinations.
    pub ssh: SshOptions,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

fn net_err(nd: &NetDest, detail: impl Into<String>) -> Error {
    Error::Transport {
        endpoint: nd.to_string(),
        detail: detail.into(),
    }
}

fn resolve(nd: &NetDest) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (nd.host.as_str(), nd.port)
        .to_socket_addrs()
        .map_err(|e| net_err(nd, format!("cannot resolve {:?}: {e}", nd.host)))?
        .collect();
    if nd.scheme == Scheme::Tcp && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(net_err(
            nd,
            "tcp:// is plaintext and only allowed to loopback addresses",
        ));
    }
    if addrs.is_empty() {
        return Err(net_err(nd, format!("{:?} has no address", nd.host)));
    }
    Ok(addrs)
}

fn tcp_connect(nd: &NetDest, addrs: &[SocketAddr]) -> Result<TcpStream> {
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(format!("{a}: {e}")),
        }
    }
    Err(net_err(
        nd,
        format!("cannot connect: {}", last.unwrap_or_default()),
    ))
}

/// Open a byte pipe to `dest`: write the stream into it, then call [`Conn::finish`].
pub fn connect(dest: &Dest, opts: &ConnectOptions) -> Result<Box<dyn Conn>> {
    Ok(match dest {
        Dest::Stdout => Box::new(FileConn::stdout()),
        Dest::File(p) => Box::new(FileConn::create(p.clone())?),
        Dest::Ssh {
            user,
            host,
            port,
            path,
        } => {
            let cmd = ssh::command(user.as_deref(), host, *port, path, &opts.ssh);
            let endpoint = ssh::endpoint(user.as_deref(), host, *port, path);
            Box::new(SshConn::spawn(endpoint, cmd)?)
        }
        Dest::Net(nd) if nd.scheme == Scheme::Quic => {
            Box::new(connect_lanes(nd, opts, QUIC_LANES)?)
        }
        Dest::Net(nd) => Box::new(NetConn::start(
            nd.to_string(),
            tcp_duplex(nd, opts)?,
            &nd.name,
            Vec::new(),
            None,
        )?),
    })
}

/// Connect and handshake a tls:// or tcp:// destination.
fn tcp_duplex(nd: &NetDest, opts: &ConnectOptions) -> Result<Duplex> {
    let addrs = resolve(nd)?;
    let sock = tcp_connect(nd, &addrs)?;
    if nd.scheme == Scheme::Tls {
        let config = tlsconf::client_config(&opts.tls)?;
        let name = tlsconf::server_name(&nd.host)?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| net_err(nd, tlsconf::explain(&e)))?;
        tls::handshake(conn.into(), sock).map_err(|e| net_err(nd, e.to_string()))
    } else {
        duplex::tcp(sock).map_err(|e| net_err(nd, e.to_string()))
    }
}

/// Open a two-way channel to a remote destination for `lvmsync verify`'s hash queries:
/// ssh:// runs `lvmsync verify --serve-hashes <path>` there; tls://, quic:// and tcp://
/// open a session with a `Query` hello (refusals as for `connect`). Local destinations
/// (`-`, files) have no channel.
pub fn open_channel(dest: &Dest, opts: &ConnectOptions) -> Result<Box<dyn Channel>> {
    match dest {
        Dest::Stdout | Dest::File(_) => Err(Error::InvalidArgument(
            "a hash-query channel needs an ssh://, tls://, quic:// or tcp:// destination".into(),
        )),
        Dest::Ssh {
            user,
            host,
            port,
            path,
        } => {
            let words = ["verify", "--serve-hashes"];
            let cmd = ssh::command_running(&words, user.as_deref(), host, *port, path, &opts.ssh);
            Ok(Box::new(SshConn::spawn_duplex(
                ssh::endpoint(user.as_deref(), host, *port, path),
                cmd,
            )?))
        }
        Dest::Net(nd) => {
            let (duplex, keep): (Duplex, Option<Box<dyn Send>>) = if nd.scheme == Scheme::Quic {
                let addrs = resolve(nd)?;
                let config = tlsconf::client_config(&opts.tls)?;
                let q = QuicClient::connect(&nd.to_string(), &addrs, &nd.host, config)?;
                (q.duplex, Some(Box::new(q.keep)))
            } else {
                (tcp_duplex(nd, opts)?, None)
            };
            query_hello(nd, duplex, keep)
        }
    }
}

/// Send the `Query` hello and wait for Accept; then both directions are Data frames.
fn query_hello(
    nd: &NetDest,
    mut d: Duplex,
    keep: Option<Box<dyn Send>>,
) -> Result<Box<dyn Channel>> {
    let hello = Control::Query {
        name: nd.name.clone(),
    };
    say_hello(&nd.to_string(), &mut d, &hello)?;
    let read: Box<dyn Read + Send> = Box::new(DataReader::new(d.read));
    Ok(Box::new(FramedChannel::new(
        nd.to_string(),
        read,
        d.write,
        keep,
    )))
}

/// Streams a quic:// sender stripes its byte stream over: the main one plus this many lanes
/// (docs/transport.md, "Lanes").
pub const QUIC_LANES: u16 = 3;

/// Connect to a quic:// destination and stripe the byte stream over the main stream and
/// `lanes` extra parallel QUIC streams (the receiver joins them back in order).
pub fn connect_lanes(nd: &NetDest, opts: &ConnectOptions, lanes: u16) -> Result<NetConn> {
    if nd.scheme != Scheme::Quic {
        return Err(net_err(nd, "parallel lanes need a quic:// destination"));
    }
    if lanes > MAX_LANES {
        return Err(Error::InvalidArgument(format!(
            "at most {MAX_LANES} lanes, not {lanes}"
        )));
    }
    let addrs = resolve(nd)?;
    let config = tlsconf::client_config(&opts.tls)?;
    let QuicClient { duplex, keep } =
        QuicClient::connect(&nd.to_string(), &addrs, &nd.host, config)?;
    let writers = (0..lanes)
        .map(|i| {
            keep.open_lane(i)
                .map_err(|e| net_err(nd, format!("opening lane {i}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    NetConn::start(
        nd.to_string(),
        duplex,
        &nd.name,
        writers,
        Some(Box::new(keep)),
    )
}
