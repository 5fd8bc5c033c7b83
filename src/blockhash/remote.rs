//! The hash-query protocol: how `lvmsync verify` compares its source with a destination on
//! another machine, and repairs it, over any two-way byte channel (the stdin/stdout of
//! `ssh host lvmsync verify --serve-hashes <dest>`, or the Data frames of a tls://, quic://
//! or tcp:// session). The wire format is specified in docs/transport.md ("Verify").
//!
//! The client asks for the destination's length, has the server build its [`HashTree`] over
//! the common length while it builds its own, then walks both trees from the root down
//! ([`differing_blocks`](super::tree::differing_blocks)) through [`HashClient`] as a
//! [`TreePeer`]. A repair is a normal delta stream sent after a `Repair` request; the server
//! hands it to its journaled apply and answers with the outcome.

use super::tree::{HashTree, TreePeer, MAX_NODES_PER_ASK};
use crate::error::{Error, Result};
use crate::transport::frame::fill_or_eof;
use crate::transport::verdict::{class_frame, read_class, Failure};
use crate::units::Bytes;
use std::io::{self, Read, Write};
use std::path::Path;

const INFO: u8 = b'I';
const INFO_REPLY: u8 = b'i';
const BUILD: u8 = b'B';
const BUILD_REPLY: u8 = b'b';
const NODES: u8 = b'N';
const NODES_REPLY: u8 = b'n';
const REPAIR: u8 = b'R';
const REPAIR_REPLY: u8 = b'r';
const QUIT: u8 = b'Q';
const FAILED: u8 = b'e';

/// Largest message payload either side accepts (a full `Nodes` ask is 512 KiB + 1 byte, its
/// reply 2 MiB).
pub const MAX_MESSAGE: usize = 4 << 20;

fn send(w: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    send_then(w, tag, payload, &[])
}

/// Send one message and `then` (already encoded) in the same write.
fn send_then(w: &mut impl Write, tag: u8, payload: &[u8], then: &[u8]) -> io::Result<()> {
    let mut m = Vec::with_capacity(5 + payload.len() + then.len());
    m.push(tag);
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    m.extend_from_slice(then);
    w.write_all(&m)?;
    w.flush()
}

/// Read one message; `Ok(None)` is a clean end before its first byte.
fn recv(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 5];
    if !fill_or_eof(r, &mut h)? {
        return Ok(None);
    }
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("hash-query message of {len} bytes exceeds {MAX_MESSAGE}"),
        ));
    }
    let mut p = vec![0u8; len];
    r.read_exact(&mut p)?;
    Ok(Some((h[0], p)))
}

fn u64_at(p: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(p[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// What a served client ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// It asked its questions and quit (or went away cleanly).
    Quit,
    /// It sent a repair; the apply's summary.
    Repaired(String),
}

/// Answer one client's hash queries about `device` on `ch` (`peer` names it in errors).
///
/// `repair` is called with the channel positioned at the start of a delta stream when the
/// client asks for a repair; it applies the stream (journaled) and returns a summary line or
/// its error, whose text and class are sent back (the class in a `Class` frame after the
/// reply, as a receiver's verdict carries it), so the client exits with the code the apply
/// had here. That error is also what `serve` returns. Any other failure is sent to the client
/// before it is returned.
pub fn serve<C: Read + Write + Send>(
    mut ch: C,
    peer: &str,
    device: &Path,
    repair: &mut dyn FnMut(&mut (dyn Read + Send)) -> Result<String>,
) -> Result<Served> {
    let lost = |e: io::Error| Error::Transport {
        endpoint: peer.to_string(),
        detail: format!("hash queries: {e}"),
    };
    let mut tree: Option<HashTree> = None;
    loop {
        let Some((tag, p)) = recv(&mut ch).map_err(lost)? else {
            return Ok(Served::Quit);
        };
        let answer = match (tag, p.len()) {
            (INFO, 0) => device_len(device).map(|n| (INFO_REPLY, n.to_be_bytes().to_vec())),
            (BUILD, 16) => {
                let (block_size, len) = (Bytes(u64_at(&p, 0)), Bytes(u64_at(&p, 1)));
                HashTree::build(device, len, block_size).map(|t| {
                    let mut r = t.blocks().to_be_bytes().to_vec();
                    r.extend_from_slice(t.root().as_bytes());
                    tree = Some(t);
                    (BUILD_REPLY, r)
                })
            }
            (NODES, n) if n >= 1 && (n - 1) % 8 == 0 && (n - 1) / 8 <= MAX_NODES_PER_ASK => {
                let indices: Vec<u64> = (0..(n - 1) / 8).map(|i| u64_at(&p[1..], i)).collect();
                match &tree {
                    None => Err(Error::InvalidArgument("nodes asked before a build".into())),
                    Some(t) => t.nodes(p[0] as usize, &indices).map(|hs| {
                        let bytes = hs.iter().flat_map(|h| *h.as_bytes()).collect();
                        (NODES_REPLY, bytes)
                    }),
                }
            }
            (REPAIR, 0) => {
                let outcome = repair(&mut ch);
                let (reply, class) = match &outcome {
                    Ok(_) => (vec![0], Vec::new()),
                    Err(e) => {
                        let failure = Failure::new(e.class(), e.to_string());
                        let reply = [&[1u8][..], failure.text.as_bytes()].concat();
                        (reply, class_frame(&failure))
                    }
                };
                send_then(&mut ch, REPAIR_REPLY, &reply, &class).map_err(lost)?;
                return outcome.map(Served::Repaired);
            }
            (QUIT, 0) => return Ok(Served::Quit),
            (tag, n) => Err(Error::InvalidArgument(format!(
                "{peer} sent a bad hash-query message (tag 0x{tag:02x}, {n} bytes)"
            ))),
        };
        match answer {
            Ok((tag, reply)) => send(&mut ch, tag, &reply).map_err(lost)?,
            Err(e) => {
                let _ = send(&mut ch, FAILED, e.to_string().as_bytes());
                return Err(e);
            }
        }
    }
}

fn device_len(device: &Path) -> Result<u64> {
    let f = std::fs::File::open(device).map_err(|e| Error::io(device, e))?;
    Ok(Bytes::len_of(&f).map_err(|e| Error::io(device, e))?.0)
}

/// The verify side of the protocol: ask a remote hash server about its device.
pub struct HashClient<C: Read + Write> {
    ch: C,
    endpoint: String,
    asked: u64,
}

impl<C: Read + Write> HashClient<C> {
    /// Talk to the server at the other end of `ch`; `endpoint` names it in errors.
    pub fn new(ch: C, endpoint: &str) -> Self {
        HashClient {
            ch,
            endpoint: endpoint.to_string(),
            asked: 0,
        }
    }

    /// How many tree nodes were asked for so far (the traffic is 40 bytes a node).
    pub fn nodes_asked(&self) -> u64 {
        self.asked
    }

    fn lost(&self, e: io::Error) -> Error {
        Error::Transport {
            endpoint: self.endpoint.clone(),
            detail: format!("hash queries: {e}"),
        }
    }

    fn request(&mut self, tag: u8, payload: &[u8]) -> Result<()> {
        send(&mut self.ch, tag, payload).map_err(|e| self.lost(e))
    }

    /// Read the reply `want`; a server-side failure is the destination's error.
    fn reply(&mut self, want: u8) -> Result<Vec<u8>> {
        match recv(&mut self.ch) {
            Ok(Some((tag, p))) if tag == want => Ok(p),
            Ok(Some((FAILED, p))) => Err(Error::Destination {
                dest: self.endpoint.clone(),
                detail: String::from_utf8_lossy(&p).into_owned(),
            }),
            Ok(Some((tag, _))) => Err(self.lost(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected reply 0x{tag:02x}"),
            ))),
            Ok(None) => Err(self.lost(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the channel",
            ))),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// The length of the remote device or file.
    pub fn remote_len(&mut self) -> Result<Bytes> {
        self.request(INFO, &[])?;
        let p = self.reply(INFO_REPLY)?;
        if p.len() != 8 {
            return Err(self.lost(io::ErrorKind::InvalidData.into()));
        }
        Ok(Bytes(u64_at(&p, 0)))
    }

    /// Ask the server to hash its first `len` bytes in `block_size` blocks. Returns at once,
    /// so the caller can build its own tree meanwhile; [`Self::built`] waits for the answer.
    pub fn start_build(&mut self, block_size: Bytes, len: Bytes) -> Result<()> {
        let p = [block_size.0.to_be_bytes(), len.0.to_be_bytes()].concat();
        self.request(BUILD, &p)
    }

    /// Wait for the server's tree: its block count and root.
    pub fn built(&mut self) -> Result<(u64, blake3::Hash)> {
        let p = self.reply(BUILD_REPLY)?;
        if p.len() != 40 {
            return Err(self.lost(io::ErrorKind::InvalidData.into()));
        }
        let root: [u8; 32] = p[8..].try_into().expect("32 bytes");
        Ok((u64_at(&p, 0), blake3::Hash::from_bytes(root)))
    }

    /// Announce a repair: the caller writes a delta stream into [`Self::channel`], ends its
    /// direction, then reads the outcome with [`Self::repaired`].
    pub fn start_repair(&mut self) -> Result<()> {
        self.request(REPAIR, &[])
    }

    /// The channel, for the repair's delta stream.
    pub fn channel(&mut self) -> &mut C {
        &mut self.ch
    }

    /// The server's verdict on the repair. `Err` carries its apply's error text in that
    /// error's class (the `Class` frame after the reply), so a refused repair exits as a
    /// refused send does; a transport error from an older server that sends no class.
    pub fn repaired(&mut self) -> Result<()> {
        let p = self.reply(REPAIR_REPLY)?;
        match p.split_first() {
            Some((0, [])) => Ok(()),
            Some((1, msg)) => {
                let failure = Failure {
                    class: read_class(&mut self.ch),
                    text: String::from_utf8_lossy(msg).into_owned(),
                };
                Err(failure.into_error(&self.endpoint))
            }
            _ => Err(self.lost(io::ErrorKind::InvalidData.into())),
        }
    }

    /// Tell the server we are done (no repair).
    pub fn quit(&mut self) -> Result<()> {
        self.request(QUIT, &[])
    }
}

impl<C: Read + Write> TreePeer for HashClient<C> {
    fn nodes(&mut self, level: usize, indices: &[u64]) -> Result<Vec<blake3::Hash>> {
        let level = u8::try_from(level)
            .map_err(|_| Error::InvalidArgument(format!("hash tree level {level} too deep")))?;
        let mut p = Vec::with_capacity(1 + indices.len() * 8);
        p.push(level);
        for i in indices {
            p.extend_from_slice(&i.to_be_bytes());
        }
        self.request(NODES, &p)?;
        self.asked += indices.len() as u64;
        let r = self.reply(NODES_REPLY)?;
        if r.len() != indices.len() * 32 {
            return Err(self.lost(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} hash bytes for {} nodes", r.len(), indices.len()),
            )));
        }
        Ok(r.chunks(32)
            .map(|c| blake3::Hash::from_bytes(c.try_into().expect("32 bytes")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockhash::tree::differing_blocks;
    use crate::error::ErrorClass;
    use std::os::unix::net::UnixStream;

    /// Serve `device` on one end of a socket pair in a thread; the other end for the client.
    fn serving(device: &Path) -> (UnixStream, std::thread::JoinHandle<Result<Served>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let device = device.to_path_buf();
        let server = std::thread::spawn(move || {
            serve(theirs, "test peer", &device, &mut |_| {
                Err(Error::InvalidArgument("no repairs".into()))
            })
        });
        (ours, server)
    }

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    #[test]
    fn client_finds_the_blocks_that_differ_from_the_served_file() {
        let mut img: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let remote = file(&img);
        img[0] ^= 1;
        img[4096 * 30 + 5] ^= 1;
        img[299_999] ^= 1;
        let local = file(&img);
        let (ch, server) = serving(remote.path());
        let mut c = HashClient::new(ch, "test");
        assert_eq!(c.remote_len().unwrap(), Bytes(300_000));
        let bs = Bytes(4096);
        c.start_build(bs, Bytes(300_000)).unwrap();
        let mine = HashTree::build(local.path(), Bytes(300_000), bs).unwrap();
        let (blocks, root) = c.built().unwrap();
        assert_eq!(blocks, mine.blocks());
        assert_ne!(root, mine.root());
        assert_eq!(differing_blocks(&mine, &mut c).unwrap(), [0, 30, 73]);
        assert!(c.nodes_asked() > 0);
        c.quit().unwrap();
        assert_eq!(server.join().unwrap().unwrap(), Served::Quit);
    }

    /// The client's side of a repair against a server that answers `reply` (raw bytes, as
    /// a newer or an older server writes them) and then closes.
    fn repaired_against(reply: Vec<u8>) -> Error {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let (tag, p) = recv(&mut theirs).unwrap().unwrap();
            assert_eq!((tag, p.len()), (REPAIR, 0));
            theirs.write_all(&reply).unwrap();
        });
        let mut c = HashClient::new(ours, "test");
        c.start_repair().unwrap();
        let err = c.repaired().unwrap_err();
        server.join().unwrap();
        err
    }

    #[test]
    fn a_refused_repair_carries_the_servers_class_and_an_older_servers_is_transport() {
        let text = "dest: is 1 bytes but the stream's device is 2 bytes";
        let failure = Failure::new(ErrorClass::Destination, text);
        let reply = |class: &[u8]| {
            let mut m = Vec::new();
            let p = [&[1u8][..], text.as_bytes()].concat();
            send_then(&mut m, REPAIR_REPLY, &p, class).unwrap();
            m
        };
        // A server with the `K` message: the class of its apply's failure, its words once.
        let new = repaired_against(reply(&class_frame(&failure)));
        assert_eq!(new.class(), ErrorClass::Destination, "{new}");
        assert_eq!(new.to_string().matches(text).count(), 1, "{new}");
        // An older server closes after the reply: a transport failure that still says why.
        let old = repaired_against(reply(&[]));
        assert_eq!(old.class(), ErrorClass::Transport, "{old}");
        assert!(old.to_string().contains(text), "{old}");
        // Anything but a `K` after the reply (a desynchronised peer) is not taken as a class.
        let odd = repaired_against(reply(&[QUIT, 0, 0, 0, 0]));
        assert_eq!(odd.class(), ErrorClass::Transport, "{odd}");
    }

    #[test]
    fn bad_requests_get_the_servers_error() {
        let remote = file(&[7u8; 10_000]);
        // Nodes before any build.
        let (ch, server) = serving(remote.path());
        let mut c = HashClient::new(ch, "test");
        let err = c.nodes(0, &[0]).unwrap_err();
        assert!(
            matches!(&err, Error::Destination { detail, .. } if detail.contains("before a build")),
            "{err}"
        );
        assert!(server.join().unwrap().is_err());
        // Longer than the device.
        let (ch, server) = serving(remote.path());
        let mut c = HashClient::new(ch, "test");
        c.start_build(Bytes(4096), Bytes(20_000)).unwrap();
        let err = c.built().unwrap_err().to_string();
        assert!(err.contains("fewer than the 20000 to hash"), "{err}");
        assert!(server.join().unwrap().is_err());
        // A message over the cap is refused before anything is allocated.
        let (mut ch, server) = serving(remote.path());
        ch.write_all(&[NODES, 0xff, 0xff, 0xff, 0xff]).unwrap();
        let err = server.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("exceeds"), "{err}");
    }
}
