//! Destination and listen URLs, parsed once into typed values.
//!
//! `lvmsync send --to <dest>` accepts `-`, a file path, `ssh://[user@]host[:port]/<path>`,
//! `tls://host:port/<name>`, `quic://host:port/<name>` and `tcp://host:port/<name>`; the
//! receiving server takes `--listen tls://addr:port` (or `quic://`, `tcp://`). Everything is
//! validated here, at the edge, so the transports below can assume a well-formed target.
//! `tcp://` is plaintext and therefore only accepted for loopback addresses.

use crate::{Error, Result};
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where `lvmsync send` writes its byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// `-`: standard output.
    Stdout,
    /// A local file (the delta kept to apply later).
    File(PathBuf),
    /// `ssh://[user@]host[:port]/<path>`: the system `ssh` runs `lvmsync receive <path>` there.
    Ssh {
        /// Remote login name, if given.
        user: Option<String>,
        /// Host name or address (brackets of an IPv6 literal removed).
        host: String,
        /// ssh port, if not the default.
        port: Option<u16>,
        /// The device or file on the far side (absolute).
        path: String,
    },
    /// A network receiver speaking the lvmsync transport protocol.
    Net(NetDest),
}

/// The three network schemes; all share the framed control channel (docs/transport.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TCP + rustls, mutual TLS.
    Tls,
    /// QUIC (quinn), mutual TLS, several streams.
    Quic,
    /// Plaintext TCP, loopback only (tests, benchmarks).
    Tcp,
}

impl Scheme {
    /// The URL scheme name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Tls => "tls",
            Scheme::Quic => "quic",
            Scheme::Tcp => "tcp",
        }
    }
}

/// `scheme://host:port/<name>`: a network receiver and the name of the destination it maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDest {
    /// Which transport.
    pub scheme: Scheme,
    /// Host name or IP literal (without IPv6 brackets); also the TLS server name checked.
    pub host: String,
    /// Port (required: there is no well-known lvmsync port).
    pub port: u16,
    /// The name the server maps to a device with `--allow <name>=<device>`.
    pub name: String,
}

/// `--listen scheme://addr:port`: where a receiving server accepts connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUrl {
    /// Which transport.
    pub scheme: Scheme,
    /// The address to bind (port 0 picks a free one).
    pub addr: SocketAddr,
}

impl fmt::Display for NetDest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = bracket(&self.host);
        write!(
            f,
            "{}://{host}:{}/{}",
            self.scheme.as_str(),
            self.port,
            self.name
        )
    }
}

impl fmt::Display for ListenUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.addr)
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn bad(url: &str, why: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("{url}: {}", why.into()))
}

/// Split `host[:port]` where host may be a bracketed IPv6 literal.
fn split_host_port<'a>(url: &str, authority: &'a str) -> Result<(&'a str, Option<u16>)> {
    let (host, rest) = if let Some(inner) = authority.strip_prefix('[') {
        let end = inner
            .find(']')
            .ok_or_else(|| bad(url, "unclosed '[' in an IPv6 address"))?;
        (&inner[..end], &inner[end + 1..])
    } else {
        match authority.rfind(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return Err(bad(url, "missing host"));
    }
    let port = match rest {
        "" => None,
        p => {
            let digits = p
                .strip_prefix(':')
                .ok_or_else(|| bad(url, "junk after the IPv6 address"))?;
            let port: u16 = digits
                .parse()
                .map_err(|_| bad(url, format!("bad port {digits:?}")))?;
            Some(port)
        }
    };
    if host.contains(['/', '@', ' ', '[', ']']) {
        return Err(bad(url, format!("bad host {host:?}")));
    }
    Ok((host, port))
}

/// A name a server maps to a device: short, no path characters.
fn check_name(url: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(
            url,
            format!("destination name {name:?} must be 1-255 characters of A-Z a-z 0-9 . _ -"),
        ))
    }
}

fn scheme_of(s: &str) -> Option<(&str, &str)> {
    let i = s.find("://")?;
    let scheme = &s[..i];
    let ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+');
    ok.then(|| (scheme, &s[i + 3..]))
}

/// True when every address `host` names is a loopback address (`localhost` is resolved).
pub fn is_loopback_host(host: &str) -> bool {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    if host != "localhost" {
        return false;
    }
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

fn refuse_plaintext(url: &str, host: &str) -> Error {
    bad(
        url,
        format!(
            "tcp:// is plaintext and only allowed to a loopback address (127.0.0.0/8, ::1), \
             not {host:?}; use tls:// or quic:// with --cert/--key/--ca"
        ),
    )
}

impl std::str::FromStr for Dest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s == "-" {
            return Ok(Dest::Stdout);
        }
        let Some((scheme, rest)) = scheme_of(s) else {
            if s.is_empty() {
                return Err(bad(s, "empty destination"));
            }
            return Ok(Dest::File(PathBuf::from(s)));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        match scheme {
            "ssh" => {
                let (user, hostport) = match authority.rfind('@') {
                    Some(i) => (Some(authority[..i].to_string()), &authority[i + 1..]),
                    None => (None, authority),
                };
                if user.as_deref() == Some("") {
                    return Err(bad(s, "empty user name before '@'"));
                }
                let (host, port) = split_host_port(s, hostport)?;
                if path.len() < 2 {
                    return Err(bad(s, "missing the remote device or file after the host"));
                }
                Ok(Dest::Ssh {
                    user,
                    host: host.to_string(),
                    port,
                    path: path.to_string(),
                })
            }
            "tls" | "quic" | "tcp" => {
                let scheme = match scheme {
                    "tls" => Scheme::Tls,
                    "quic" => Scheme::Quic,
                    _ => Scheme::Tcp,
                };
                let (host, port) = split_host_port(s, authority)?;
                let port = port.ok_or_else(|| bad(s, "missing :port"))?;
                let name = path.strip_prefix('/').unwrap_or("");
                check_name(s, name)?;
                if scheme == Scheme::Tcp && !is_loopback_host(host) {
                    return Err(refuse_plaintext(s, host));
                }
                Ok(Dest::Net(NetDest {
                    scheme,
                    host: host.to_string(),
                    port,
                    name: name.to_string(),
                }))
            }
            other => Err(bad(
                s,
                format!(
                    "unknown scheme {other:?}; use -, a file, ssh://, tls://, quic:// or tcp://"
                ),
            )),
        }
    }
}

impl std::str::FromStr for ListenUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (scheme, rest) = scheme_of(s).ok_or_else(|| {
            bad(
                s,
                "expected tls://addr:port, quic://addr:port or tcp://addr:port",
            )
        })?;
        let scheme = match scheme {
            "tls" => Scheme::Tls,
            "quic" => Scheme::Quic,
            "tcp" => Scheme::Tcp,
            other => {
                return Err(bad(
                    s,
                    format!("cannot listen on {other:?}; use tls://, quic:// or tcp://"),
                ))
            }
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(s, authority)?;
        let port = port.ok_or_else(|| bad(s, "missing :port (0 picks a free one)"))?;
        let ip: IpAddr = match host.parse() {
            Ok(ip) => ip,
            Err(_) => (host, port)
                .to_socket_addrs()
                .map_err(|e| bad(s, format!("cannot resolve {host:?}: {e}")))?
                .next()
                .ok_or_else(|| bad(s, format!("{host:?} has no address")))?
                .ip(),
        };
        if scheme == Scheme::Tcp && !ip.is_loopback() {
            return Err(refuse_plaintext(s, host));
        }
        Ok(ListenUrl {
            scheme,
            addr: SocketAddr::new(ip, port),
        })
    }
}

#[cfg(test)]
mod tests;
