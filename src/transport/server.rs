//! The receiver's entry point: `lvmsync receive --listen tls://addr:port --allow name=device`.
//!
//! [`Listener::accept`] completes the TLS handshake (a client without a certificate, with an
//! untrusted one, or speaking plaintext to a TLS port fails here), reads the hello, maps the
//! requested name to a device through the `--allow` list, and only then hands a [`Session`] to
//! the receiver. Nothing from a refused client ever reaches it. A client may also open a
//! session with a `Query` hello (`lvmsync verify`): the same checks apply, and the session is
//! then a two-way hash-query channel ([`Session::into_channel`]) instead of a stream.

use super::channel::FramedChannel;
use super::duplex::{self, Duplex, WriteHalf};
use super::frame::{read_control, Control, DataReader, MAX_CONTROL};
use super::quic::{QuicKeep, QuicServer, MAX_LANES};
use super::readahead::ReadAhead;
use super::stripe;
use super::tls;
use super::tlsconf::{self, TlsFiles};
use super::url::{ListenUrl, Scheme};
use super::verdict::{self, Verdict};
use crate::{Error, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest a client may take between connecting and its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// One `--allow <name>=<device>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The name a client asks for in its URL (`tls://host:port/<name>`).
    pub name: String,
    /// The device or file that name is received into.
    pub device: PathBuf,
}

impl std::str::FromStr for Allow {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, device) = s.split_once('=').ok_or_else(|| {
            Error::InvalidArgument(format!("--allow {s:?}: expected <name>=<device-or-file>"))
        })?;
        let url = format!("--allow {s}");
        if name.is_empty() || device.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{url}: empty name or device"
            )));
        }
        // Same rule as the name part of a destination URL.
        format!("tcp://127.0.0.1:1/{name}")
            .parse::<super::url::Dest>()
            .map_err(|_| {
                Error::InvalidArgument(format!(
                    "{url}: name must be 1-255 characters of A-Z a-z 0-9 . _ -"
                ))
            })?;
        Ok(Allow {
            name: name.to_string(),
            device: PathBuf::from(device),
        })
    }
}

/// What a receiving server needs besides its listen URL.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `--cert`, `--key`, `--client-ca` (not used by tcp://).
    pub tls: TlsFiles,
    /// The names clients may ask for, and where each is received.
    pub allow: Vec<Allow>,
}

enum Kind {
    Tcp(TcpListener),
    Tls(TcpListener, Arc<rustls::ServerConfig>),
    Quic(QuicServer),
}

/// Looks up the resume point (an opaque stream checkpoint) the receiver holds for a device.
pub type ResumeLookup = Box<dyn Fn(&Path) -> Option<Vec<u8>> + Send + Sync>;

/// A bound receiving server.
pub struct Listener {
    kind: Kind,
    allow: Vec<Allow>,
    url: ListenUrl,
    resume: Option<ResumeLookup>,
}

/// What an accepted client came for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A byte stream (a delta) to apply (`Hello`).
    Stream,
    /// `lvmsync verify`'s hash queries and maybe a repair (`Query`): see
    /// [`Session::into_channel`].
    HashQueries,
}

/// An accepted, authenticated client and the device its name maps to.
pub struct Session {
    /// The name the client asked for.
    pub name: String,
    /// Stream or hash queries.
    pub purpose: Purpose,
    /// The device or file from the matching `--allow`.
    pub device: PathBuf,
    /// The client's address.
    pub peer: String,
    /// The byte stream (EOF at the sender's clean end; an error if the connection is cut).
    pub data: Box<dyn Read + Send>,
    /// The way back to the sender: checkpoint acks and the final status.
    pub acks: Acker,
}

/// The receiver's half of the control channel.
pub struct Acker {
    write: Box<dyn WriteHalf>,
    peer: String,
    _keep: Option<Box<dyn Send>>,
}

impl Acker {
    fn send(&mut self, frames: &[u8]) -> Result<()> {
        self.write
            .write_all(frames)
            .and_then(|()| self.write.flush())
            .map_err(|e| Error::Transport {
                endpoint: format!("client {}", self.peer),
                detail: format!("cannot answer the sender: {e}"),
            })
    }

    /// Tell the sender that everything up to stream checkpoint `token` (the stream format's
    /// encoded checkpoint) is durable here.
    pub fn checkpoint(&mut self, token: &[u8]) -> Result<()> {
        self.send(&Control::Checkpoint(token.to_vec()).encode())
    }

    /// Send the final verdict and close. A failure carries the receiver's error text and
    /// its class, so the sender exits with the code a local receiver would have.
    pub fn finish(mut self, outcome: Verdict) -> Result<()> {
        self.send(&verdict::encode(&outcome))?;
        self.write.close().map_err(|e| Error::Transport {
            endpoint: format!("client {}", self.peer),
            detail: format!("closing: {e}"),
        })
    }
}

fn listen_err(url: &ListenUrl, e: impl std::fmt::Display) -> Error {
    Error::Transport {
        endpoint: url.to_string(),
        detail: e.to_string(),
    }
}

impl Listener {
    /// Bind `url`; tls:// and quic:// load the certificates now so mistakes show at start-up.
    pub fn bind(url: &ListenUrl, opts: &ServerOptions) -> Result<Self> {
        if opts.allow.is_empty() {
            return Err(Error::InvalidArgument(
                "a listening receiver needs at least one --allow <name>=<device>".into(),
            ));
        }
        let kind = match url.scheme {
            Scheme::Tcp => Kind::Tcp(TcpListener::bind(url.addr).map_err(|e| listen_err(url, e))?),
            Scheme::Tls => {
                let config = tlsconf::server_config(&opts.tls)?;
                Kind::Tls(
                    TcpListener::bind(url.addr).map_err(|e| listen_err(url, e))?,
                    config,
                )
            }
            Scheme::Quic => Kind::Quic(QuicServer::bind(
                url.addr,
                tlsconf::server_config(&opts.tls)?,
            )?),
        };
        let mut url = url.clone();
        url.addr = match &kind {
            Kind::Tcp(l) | Kind::Tls(l, _) => l.local_addr(),
            Kind::Quic(q) => q.local_addr(),
        }
        .map_err(|e| listen_err(&url, e))?;
        Ok(Listener {
            kind,
            allow: opts.allow.clone(),
            url,
            resume: None,
        })
    }

    /// Answer each accepted sender with the resume point `lookup` returns for its device (the
    /// checkpoint an interrupted apply there can continue from), so `send --resume` knows where
    /// to start. Without it every Accept says "nothing to resume".
    pub fn with_resume_points(mut self, lookup: ResumeLookup) -> Self {
        self.resume = Some(lookup);
        self
    }

    /// The bound address (port 0 resolved to the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.url.addr
    }

    /// Wait for the next client. An `Err` is about that client only (refused, bad
    /// certificate, not our protocol): log it and call `accept` again.
    pub fn accept(&self) -> Result<Session> {
        let (duplex, keep): (Duplex, Option<QuicKeep>) = match &self.kind {
            Kind::Tcp(l) | Kind::Tls(l, _) => {
                let (sock, peer) = l.accept().map_err(|e| listen_err(&self.url, e))?;
                sock.set_read_timeout(Some(HELLO_TIMEOUT))
                    .map_err(|e| client_err(peer, e))?;
                let d = match &self.kind {
                    Kind::Tls(_, config) => {
                        let conn = rustls::ServerConnection::new(config.clone())
                            .map_err(|e| client_err(peer, tlsconf::explain(&e)))?;
                        let ctl = sock.try_clone().map_err(|e| client_err(peer, e))?;
                        tls::handshake(conn.into(), ctl).map_err(|e| client_err(peer, e))?
                    }
                    _ => duplex::tcp(sock.try_clone().map_err(|e| client_err(peer, e))?)
                        .map_err(|e| client_err(peer, e))?,
                };
                let (hello, d) = self.hello(d)?;
                sock.set_read_timeout(None)
                    .map_err(|e| client_err(peer, e))?;
                // TLS: decrypt on a read-ahead thread, overlapping with the receiver's work.
                let ahead = matches!(self.kind, Kind::Tls(..));
                return session(hello, d, Vec::new(), None, ahead);
            }
            Kind::Quic(q) => {
                let acc = q.accept(HELLO_TIMEOUT)?;
                (acc.duplex, Some(acc.keep))
            }
        };
        let keep = keep.expect("quic");
        let (hello, d) = self.hello(duplex)?;
        let lanes = keep
            .accept_lanes(hello.lanes, HELLO_TIMEOUT)
            .map_err(|e| client_err(&d.peer, e))?;
        session(hello, d, lanes, Some(Box::new(keep)), false)
    }

    /// Read the hello, check the name and lanes, and answer Accept or Refuse.
    fn hello(&self, mut d: Duplex) -> Result<(Hello, Duplex)> {
        let peer = d.peer.clone();
        let (name, lanes, purpose) = match read_control(&mut d.read) {
            Ok(Control::Hello { name, lanes }) => (name, lanes, Purpose::Stream),
            Ok(Control::Query { name }) => (name, 0, Purpose::HashQueries),
            Ok(other) => {
                return Err(client_err(
                    &peer,
                    format!("sent {other:?} instead of a hello"),
                ))
            }
            Err(e) => return Err(client_err(&peer, format!("no valid hello: {e}"))),
        };
        let refuse = |mut d: Duplex, why: String| {
            let _ = d.write.write_all(&Control::Refuse(why.clone()).encode());
            let _ = d.write.close();
            Err(client_err(&peer, format!("refused: {why}")))
        };
        let Some(allow) = self.allow.iter().find(|a| a.name == name) else {
            return refuse(
                d,
                format!(
                    "no destination named {name:?} here; the server needs --allow {name}=<device>"
                ),
            );
        };
        if lanes > 0 && self.url.scheme != Scheme::Quic {
            return refuse(d, "parallel lanes need quic://".into());
        }
        if lanes > MAX_LANES {
            return refuse(d, format!("at most {MAX_LANES} lanes"));
        }
        let resume = self
            .resume
            .as_ref()
            .and_then(|f| f(&allow.device))
            .unwrap_or_default();
        if resume.len() > MAX_CONTROL {
            return refuse(d, "the receiver's resume point is too large".into());
        }
        d.write
            .write_all(&Control::Accept(resume).encode())
            .and_then(|()| d.write.flush())
            .map_err(|e| client_err(&peer, e))?;
        let hello = Hello {
            name,
            device: allow.device.clone(),
            lanes,
            purpose,
        };
        Ok((hello, d))
    }
}

struct Hello {
    name: String,
    device: PathBuf,
    lanes: u16,
    purpose: Purpose,
}

fn session(
    h: Hello,
    d: Duplex,
    lanes: Vec<Box<dyn Read + Send>>,
    keep: Option<Box<dyn Send>>,
    read_ahead: bool,
) -> Result<Session> {
    let frames = DataReader::new(d.read);
    let data: Box<dyn Read + Send> = if read_ahead {
        Box::new(ReadAhead::spawn(frames).map_err(|e| client_err(&d.peer, e))?)
    } else {
        Box::new(frames)
    };
    Ok(Session {
        name: h.name,
        purpose: h.purpose,
        device: h.device,
        peer: d.peer.clone(),
        // quic:// lanes: the sender striped the stream; join it back in order.
        data: stripe::join(
            data,
            lanes
                .into_iter()
                .map(|r| Box::new(DataReader::new(r)) as Box<dyn Read + Send>)
                .collect(),
        ),
        acks: Acker {
            write: d.write,
            peer: d.peer,
            _keep: keep,
        },
    })
}

impl Session {
    /// A hash-query session as a two-way channel: the client's Data frames in, ours out
    /// (answer with `lvmsync::blockhash::remote::serve`).
    pub fn into_channel(self) -> FramedChannel {
        let endpoint = format!("client {} ({})", self.peer, self.name);
        FramedChannel::new(endpoint, self.data, self.acks.write, self.acks._keep)
    }
}

fn client_err(peer: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Transport {
        endpoint: format!("client {peer}"),
        detail: e.to_string(),
    }
}
