//! A connection split into a read half and a write half, so one thread can stream data while
//! another reads the peer's acknowledgements. Every network transport produces a [`Duplex`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

/// The sending half of a connection; `close` ends our direction cleanly (FIN, close_notify,
/// QUIC stream finish) so the peer sees an orderly end.
pub trait WriteHalf: Write + Send {
    /// Flush and end this direction of the connection.
    fn close(&mut self) -> io::Result<()>;
}

/// Both halves of one connection plus a name for the peer used in error messages.
pub struct Duplex {
    /// Bytes from the peer.
    pub read: Box<dyn Read + Send>,
    /// Bytes to the peer.
    pub write: Box<dyn WriteHalf>,
    /// The peer's address, for messages.
    pub peer: String,
}

impl WriteHalf for TcpStream {
    fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        match self.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }
}

/// Split a plain TCP stream (tcp:// on loopback).
pub fn tcp(stream: TcpStream) -> io::Result<Duplex> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?.to_string();
    let read = io::BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    Ok(Duplex {
        read: Box::new(read),
        write: Box::new(stream),
        peer,
    })
}
