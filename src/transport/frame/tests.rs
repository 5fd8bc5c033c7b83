//! Unit tests for the control-channel framing.

use super::*;
use proptest::prelude::*;

fn all_controls() -> Vec<Control> {
    vec![
        Control::Hello {
            name: "vm-1".into(),
            lanes: 3,
        },
        Control::Accept(Vec::new()),
        Control::Accept(b"resume here".to_vec()),
        Control::Refuse("no".into()),
        Control::End,
        Control::Checkpoint((0..64).collect()),
        Control::Status(Ok(())),
        Control::Status(Err("disk full".into())),
        Control::Class(crate::ErrorClass::BaseMismatch),
        Control::Lane(2),
        Control::Query {
            name: "vm-1".into(),
        },
    ]
}

#[test]
fn controls_round_trip() {
    for c in all_controls() {
        let bytes = c.encode();
        let got = read_control(&mut &bytes[..]).unwrap();
        assert_eq!(got, c);
    }
}

#[test]
fn data_round_trip_and_end() {
    let payload: Vec<u8> = (0..(MAX_DATA * 2 + 123))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut w = DataWriter::new(Vec::new());
    w.write_all(&payload).unwrap();
    w.send_control(&Control::End).unwrap();
    let wire = w.get_mut().clone();
    let mut out = Vec::new();
    DataReader::new(&wire[..]).read_to_end(&mut out).unwrap();
    assert_eq!(out, payload);
    // Cut anywhere before End: an error, never a silent short read.
    for cut in [0, 3, HEADER + 10, wire.len() - 1] {
        let mut out = Vec::new();
        let err = DataReader::new(&wire[..cut])
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
    }
}

#[test]
fn rejects_bad_frames() {
    let mut big = vec![K_DATA];
    big.extend_from_slice(&((MAX_DATA + 1) as u32).to_be_bytes());
    assert!(read_frame(&mut &big[..]).is_err());
    let mut hello = Control::Hello {
        name: "x".into(),
        lanes: 0,
    }
    .encode();
    hello[HEADER + 4] = VERSION + 1;
    assert!(read_control(&mut &hello[..])
        .unwrap_err()
        .to_string()
        .contains("version"));
    let plaintext = b"GET / HTTP/1.1\r\n\r\n";
    assert!(read_control(&mut &plaintext[..]).is_err());
}

proptest! {
    /// Arbitrary bytes never panic the frame reader nor make it allocate past the caps.
    #[test]
    fn fuzz_reader(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = read_frame(&mut &bytes[..]);
        let mut out = Vec::new();
        let _ = DataReader::new(&bytes[..]).read_to_end(&mut out);
    }
}
