//! Unit tests for the verdict frames, both ways across protocol generations.

use super::*;

const CLASSES: [ErrorClass; 8] = [
    ErrorClass::Other,
    ErrorClass::Usage,
    ErrorClass::Source,
    ErrorClass::Destination,
    ErrorClass::Integrity,
    ErrorClass::Transport,
    ErrorClass::BaseMismatch,
    ErrorClass::Internal,
];

/// The Status frame of a failure exactly as receivers before the Class frame sent it.
fn old_status(text: &str) -> Vec<u8> {
    let mut out = vec![b'S'];
    out.extend_from_slice(&(text.len() as u32 + 1).to_be_bytes());
    out.push(1);
    out.extend_from_slice(text.as_bytes());
    out
}

#[test]
fn a_classified_failure_round_trips_after_the_checkpoints() {
    for class in CLASSES {
        let mut wire = Control::Checkpoint(b"cp 1".to_vec()).encode();
        wire.extend(encode(&Err(Failure::new(class, "dest.img is too small"))));
        let mut seen = Vec::new();
        let got = read_verdict(&mut &wire[..], |cp| seen.push(cp)).unwrap();
        assert_eq!(got, Err(Failure::new(class, "dest.img is too small")));
        assert_eq!(seen, vec![b"cp 1".to_vec()]);
    }
    let ok = encode(&Ok(()));
    assert_eq!(read_verdict(&mut &ok[..], |_| {}).unwrap(), Ok(()));
}

#[test]
fn an_older_receivers_status_is_a_transport_failure_with_its_text() {
    let wire = old_status("base mismatch on /dev/vg/copy");
    let got = read_verdict(&mut &wire[..], |_| {}).unwrap();
    assert_eq!(
        got,
        Err(Failure::unclassed("base mismatch on /dev/vg/copy"))
    );
    let err = got.unwrap_err().into_error("tls://backup:7000/copy");
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(
        err.to_string(),
        "tls://backup:7000/copy: the receiver failed: base mismatch on /dev/vg/copy"
    );
}

#[test]
fn an_older_sender_reads_the_same_status_and_stops_there() {
    // Senders before the Class frame read one control frame for the verdict and stop.
    let wire = encode(&Err(Failure::new(ErrorClass::Destination, "too small")));
    assert!(wire.starts_with(&old_status("too small")));
    let mut r = &wire[..];
    assert_eq!(
        read_control(&mut r).unwrap(),
        Control::Status(Err("too small".into()))
    );
}

#[test]
fn a_class_this_sender_does_not_know_leaves_the_failure_unclassed() {
    let mut wire = old_status("new trouble");
    wire.extend_from_slice(&[b'K', 0, 0, 0, 1, 200]);
    let got = read_verdict(&mut &wire[..], |_| {}).unwrap();
    assert_eq!(got, Err(Failure::unclassed("new trouble")));
}

#[test]
fn each_class_becomes_a_sender_error_of_that_class_saying_the_text_once() {
    for class in CLASSES {
        let err = Failure::new(class, "why").into_error("quic://h:1/x");
        assert_eq!(err.class(), class);
        // Nothing in front of the receiver's words: its usage error already says "invalid
        // argument", which a local one put in front made it say twice.
        assert_eq!(err.to_string(), "quic://h:1/x: the receiver failed: why");
        assert_eq!(ErrorClass::from_code(class as u8), Some(class));
    }
    let usage = Failure::new(ErrorClass::Usage, "invalid argument: bad").into_error("tcp://h:1/x");
    assert_eq!(
        usage.to_string(),
        "tcp://h:1/x: the receiver failed: invalid argument: bad"
    );
    assert_eq!(ErrorClass::from_code(0), None);
    assert_eq!(ErrorClass::from_code(9), None);
}
