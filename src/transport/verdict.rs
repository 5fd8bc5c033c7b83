//! The receiver's verdict on a stream as it crosses the control channel: a `Status` frame,
//! and after a failed one the failure's `Class` (docs/transport.md, "Control channel").
//!
//! The class is a frame of its own after the Status, not a field inside it, so that older
//! peers on either side keep working unchanged: an older sender stops reading at the Status
//! and never sees the Class, and an older receiver never sends one, in which case the sender
//! reports the failure as a transport error (exit 6), as it always did.

use super::frame::{read_control, read_frame, Control, Incoming};
use crate::{Error, ErrorClass};
use std::io::{self, Read};

/// Why a receiver did not take a stream: its error text and, from a receiver that sends it,
/// the error's class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class of the receiver's error (its exit code), `None` from an older receiver.
    pub class: Option<ErrorClass>,
    /// The receiver's error text.
    pub text: String,
}

impl Failure {
    /// A failure of `class`, explained by `text`.
    pub fn new(class: ErrorClass, text: impl Into<String>) -> Self {
        Failure {
            class: Some(class),
            text: text.into(),
        }
    }

    /// A failure without a class, as a receiver from before the `Class` frame reports it.
    pub fn unclassed(text: impl Into<String>) -> Self {
        Failure {
            class: None,
            text: text.into(),
        }
    }

    /// The sender's error for this failure of the receiver at `endpoint`: of the receiver's
    /// class, so the exit code is the one the receiver had, or a transport error without one.
    pub fn into_error(self, endpoint: &str) -> Error {
        let class = self.class.unwrap_or(ErrorClass::Transport);
        Error::remote(
            class,
            endpoint,
            format!("the receiver failed: {}", self.text),
        )
    }
}

/// A receiver's outcome for one stream.
pub type Verdict = std::result::Result<(), Failure>;

/// The frames that carry `verdict`: a Status, then a Class after a classified failure. Both
/// in one buffer, so they go out in one write (one TLS record, one segment) and a sender that
/// gets the Status also gets its Class before the receiver closes.
pub(crate) fn encode(verdict: &Verdict) -> Vec<u8> {
    match verdict {
        Ok(()) => Control::Status(Ok(())).encode(),
        Err(f) => [
            Control::Status(Err(f.text.clone())).encode(),
            class_frame(f),
        ]
        .concat(),
    }
}

/// The `Class` frame that follows the message carrying `failure`'s text (empty without a
/// class). The hash-query protocol (`blockhash::remote`) sends it too, after a failed repair
/// reply: its messages have the frames' shape (tag u8, length u32, payload), so both
/// protocols say a class the same way, with the same compatibility both ways.
pub(crate) fn class_frame(failure: &Failure) -> Vec<u8> {
    failure
        .class
        .map_or_else(Vec::new, |class| Control::Class(class).encode())
}

/// Read the `Class` frame that follows a failure message. `None` when the peer (an older
/// one) closes instead, or sends anything else.
pub(crate) fn read_class(read: &mut impl Read) -> Option<ErrorClass> {
    match read_frame(read) {
        Ok(Some(Incoming::Control(Control::Class(class)))) => Some(class),
        _ => None,
    }
}

/// Read the receiver's answers up to its verdict, handing each acknowledged checkpoint to
/// `checkpoint` on the way. After a failed Status the next frame is read for its Class; a
/// receiver that closes instead (an older one), or sends anything else, leaves it `None`.
pub(crate) fn read_verdict(
    read: &mut impl Read,
    mut checkpoint: impl FnMut(Vec<u8>),
) -> io::Result<Verdict> {
    loop {
        match read_control(read)? {
            Control::Checkpoint(token) => checkpoint(token),
            Control::Status(Ok(())) => return Ok(Ok(())),
            Control::Status(Err(text)) => {
                let class = read_class(read);
                return Ok(Err(Failure { class, text }));
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected {other:?} from the receiver"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests;
