//! Byte transports: carry an opaque byte stream (the delta stream) from `lvmsync send` to a
//! receiver, independent of the stream's format.
//!
//! - Sender: parse `--to` into a [`Dest`], then [`connect`] gives a [`Conn`] (`impl Write`);
//!   write the stream, call [`Conn::finish`] to get the receiver's verdict.
//! - Receiver: [`Listener::bind`] a [`ListenUrl`], [`Listener::accept`] yields a [`Session`]:
//!   the requested name, the device it maps to, the byte stream, and an [`Acker`] for
//!   checkpoint acknowledgements and the final status.
//!
//! One file per concept: URLs ([`url`]), framing ([`frame`]), certificates ([`tlsconf`]),
//! split TLS streams, QUIC, ssh, the sender ([`conn`], [`client`]), the receiver
//! ([`server`]) and its verdict ([`verdict`]). The wire protocol is specified in docs/transport.md.

pub mod channel;
pub mod client;
pub mod conn;
pub mod duplex;
pub mod frame;
pub mod quic;
mod readahead;
pub mod server;
pub mod ssh;
pub mod stripe;
mod tls;
pub mod tlsconf;
pub mod url;
pub mod verdict;

pub use channel::Channel;
pub use client::{connect, connect_lanes, open_channel, ConnectOptions, QUIC_LANES};
pub use conn::{Conn, NetConn, Outcome};
pub use server::{Acker, Allow, Listener, Purpose, ServerOptions, Session};
pub use ssh::SshOptions;
pub use tlsconf::TlsFiles;
pub use url::{Dest, ListenUrl, NetDest, Scheme};
pub use verdict::{Failure, Verdict};
