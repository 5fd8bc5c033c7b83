//! The receive loop a CLI calls for `lvmsync receive --listen ...`: accept, hand the stream to
//! the receiver, send its verdict back, repeat. Refused clients never reach the receiver.

use super::server::{Listener, Session};
use crate::{Error, Result};
use std::fmt::Display;
use std::io::Read;
use std::path::Path;

/// What the receiver is given for one accepted client.
pub struct Incoming<'a> {
    /// The name the client asked for.
    pub name: &'a str,
    /// The device or file it maps to (`--allow name=device`).
    pub device: &'a Path,
    /// The client's address.
    pub peer: &'a str,
    /// The byte stream: EOF at the sender's clean end, an error if it was cut.
    pub data: &'a mut (dyn Read + Send),
}

/// Serve clients on `listener`: each accepted stream goes to `receive`, whose `Ok`/`Err` is
/// sent back to the sender as the final status (an `Err` is shown with its whole chain).
///
/// With `once`, return after the first accepted client with its outcome (a failed receive is
/// an `Err` naming the client and device). Otherwise loop forever; refused clients and failed
/// receives are passed to `log` and the next client is awaited.
pub fn serve<E: Display>(
    listener: &Listener,
    once: bool,
    mut receive: impl FnMut(Incoming<'_>) -> std::result::Result<(), E>,
    mut log: impl FnMut(&Error),
) -> Result<()> {
    loop {
        let Session {
            name,
            device,
            peer,
            mut data,
            acks,
            ..
        } = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                log(&e);
                continue;
            }
        };
        let outcome = receive(Incoming {
            name: &name,
            device: &device,
            peer: &peer,
            data: data.as_mut(),
        })
        .map_err(|e| format!("{e:#}"));
        let sent = acks.finish(outcome.clone());
        let result = match (outcome, sent) {
            (Err(msg), _) => Err(Error::Transport {
                endpoint: format!("client {peer}"),
                detail: format!("receiving {name:?} into {}: {msg}", device.display()),
            }),
            (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        };
        if once {
            return result;
        }
        if let Err(e) = &result {
            log(e);
        }
    }
}
