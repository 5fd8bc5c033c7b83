//! Property tests over the stream reader: random streams round-trip exactly, and random
//! mutations of a valid stream (flips, truncation, insertion, deletion, splices) never
//! panic and are always refused unless they leave the bytes unchanged.

use lvmsync::stream::record::{Compression, DataRecord};
use lvmsync::stream::{Fingerprint, Header, Item, StreamReader, StreamWriter};
use lvmsync::units::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Data(u64, Vec<u8>, bool),
    Zero(u64, u64),
    Discard(u64, u64),
}

fn header() -> Header {
    Header {
        source: "fuzz".into(),
        source_uuid: String::new(),
        device_size: Bytes(1 << 24),
        base_size: Bytes(1 << 24),
        block_size: Bytes(4096),
        base: Fingerprint([1; 32]),
        target: Fingerprint([2; 32]),
        created_unix: 0,
        touched_bytes: Bytes(0),
    }
}

/// Ops at increasing offsets: (gap, kind, len or bytes).
fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (
            0u64..5000,
            0u8..3,
            prop::collection::vec(any::<u8>(), 1..3000),
            any::<bool>(),
        ),
        0..12,
    )
    .prop_map(|raw| {
        let mut off = 0;
        raw.into_iter()
            .map(|(gap, kind, bytes, zstd)| {
                off += gap;
                let len = bytes.len() as u64;
                let op = match kind {
                    0 => Op::Data(off, bytes, zstd),
                    1 => Op::Zero(off, len),
                    _ => Op::Discard(off, len),
                };
                off += len;
                op
            })
            .collect()
    })
}

fn encode(ops: &[Op]) -> Vec<u8> {
    let mut h = header();
    h.touched_bytes = Bytes(
        ops.iter()
            .map(|o| match o {
                Op::Data(_, d, _) => d.len() as u64,
                Op::Zero(_, l) | Op::Discard(_, l) => *l,
            })
            .sum(),
    );
    let mut w = StreamWriter::new(Vec::new(), "fuzz", &h).unwrap();
    for op in ops {
        match op {
            Op::Data(o, d, z) => {
                let packed = if *z {
                    zstd::bulk::compress(d, 1).unwrap()
                } else {
                    d.clone()
                };
                w.data(&DataRecord {
                    offset: *o,
                    plain_len: d.len() as u32,
                    compression: if *z {
                        Compression::Zstd
                    } else {
                        Compression::None
                    },
                    hash: *blake3::hash(d).as_bytes(),
                    payload: &packed,
                })
                .unwrap();
            }
            Op::Zero(o, l) => w.zero(*o, *l).unwrap(),
            Op::Discard(o, l) => w.discard(*o, *l).unwrap(),
        }
    }
    w.finish().unwrap().0
}

fn read_all(bytes: &[u8]) -> lvmsync::Result<Vec<Item>> {
    let mut r = StreamReader::open(bytes, "fuzz")?;
    let mut items = Vec::new();
    while let Some(i) = r.next_item()? {
        items.push(i);
    }
    Ok(items)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(ops in ops()) {
        let items = read_all(&encode(&ops)).unwrap();
        let want: Vec<Item> = ops.iter().map(|o| match o {
            Op::Data(offset, d, _) => Item::Data { offset: *offset, data: d.clone() },
            Op::Zero(offset, len) => Item::Zero { offset: *offset, len: *len },
            Op::Discard(offset, len) => Item::Discard { offset: *offset, len: *len },
        }).collect();
        prop_assert_eq!(items, want);
    }

    #[test]
    fn mutations_never_panic_and_are_refused(
        ops in ops(),
        kind in 0u8..5,
        pos in any::<prop::sample::Index>(),
        pos2 in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        junk in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let good = encode(&ops);
        let mut bad = good.clone();
        let i = pos.index(good.len());
        match kind {
            0 => bad[i] ^= byte | 1,
            1 => bad.truncate(i),
            2 => { bad.insert(i, byte); }
            3 => { bad.remove(i); }
            _ => {
                let j = pos2.index(good.len());
                let (a, b) = (i.min(j), i.max(j));
                bad.splice(a..b, junk);
            }
        }
        let result = read_all(&bad);
        if bad != good {
            prop_assert!(result.is_err(), "mutation {kind} at {i} accepted");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut with_magic = b"LVMSDLTA\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = read_all(&bytes);
        let _ = read_all(&with_magic);
    }
}
