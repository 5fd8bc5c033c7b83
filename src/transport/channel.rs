//! Two-way request/response channels, for `lvmsync verify` against a remote destination: the
//! verifier asks for hashes and reads the answers, and may then send a repair stream.
//!
//! ssh:// runs `lvmsync verify --serve-hashes <path>` on the far side and talks over its
//! stdin/stdout ([`super::ssh::SshConn`]); tls://, quic:// and tcp:// open a session with a
//! `Query` hello instead of `Hello`, after which both directions carry Data frames
//! ([`FramedChannel`]). The bytes inside are the hash-query protocol
//! (`lvmsync::blockhash::remote`, docs/transport.md "Verify").

use super::duplex::WriteHalf;
use super::frame::{Control, DataWriter};
use crate::{Error, Result};
use std::io::{self, Read, Write};

/// A byte channel both ways to one remote destination.
pub trait Channel: Read + Write + Send {
    /// The destination as the user named it, for messages.
    fn endpoint(&self) -> &str;

    /// End our direction (after a repair stream): the far side reads a clean end of input.
    fn end_writes(&mut self) -> io::Result<()>;

    /// Close, wait for the far side, and explain a failure in its own words (ssh: the remote
    /// exit status and stderr). Call it after an exchange failed to get the real reason.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Data frames in both directions over an accepted tls://, quic:// or tcp:// session.
pub struct FramedChannel {
    endpoint: String,
    read: Box<dyn Read + Send>,
    write: DataWriter<Box<dyn WriteHalf>>,
    ended: bool,
    /// Kept alive for the channel's lifetime (QUIC endpoint and runtime); dropped last.
    _keep: Option<Box<dyn Send>>,
}

impl FramedChannel {
    /// `read` yields the peer's Data payloads (a `DataReader`); what we write goes out as
    /// Data frames on `write`.
    pub(crate) fn new(
        endpoint: String,
        read: Box<dyn Read + Send>,
        write: Box<dyn WriteHalf>,
        keep: Option<Box<dyn Send>>,
    ) -> Self {
        FramedChannel {
            endpoint,
            read,
            write: DataWriter::new(write),
            ended: false,
            _keep: keep,
        }
    }
}

impl Read for FramedChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.read(buf)
    }
}

impl Write for FramedChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.write.flush()
    }
}

impl Channel for FramedChannel {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn end_writes(&mut self) -> io::Result<()> {
        if !self.ended {
            self.ended = true;
            self.write.send_control(&Control::End)?;
        }
        Ok(())
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        let closed = match self
            .end_writes()
            .and_then(|()| self.write.get_mut().close())
        {
            // The far side answered `quit` and ended the session first: nothing was lost.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        };
        closed.map_err(|e| Error::Transport {
            endpoint: self.endpoint.clone(),
            detail: format!("closing: {e}"),
        })
    }
}
