//! Block checksums of thin-pool metadata.
//!
//! Every metadata block starts with a `u32` checksum of its remaining 4092 bytes:
//! the kernel's `crc32c(~0, bytes[4..])` (which, unlike the standard CRC-32C, has no final
//! inversion) XORed with a salt that differs per block type, so a block of one type can't pass
//! as another. The standard CRC-32C is the kernel's value XOR `0xFFFF_FFFF`.
//!
//! Every node a walk reads is checksummed, so the CRC is a large part of the per-node cost.
//! Two implementations compute it: the `crc32c` crate, which uses the SSE4.2 `crc32`
//! instruction when the CPU reports it, and [`crc32c_table`], a table-driven one in plain
//! integer code. On real hardware the instruction is ~10× faster; under QEMU's TCG (the guest
//! tests, `-cpu max`) the CPU reports SSE4.2 but emulates each `crc32` instruction one bit at
//! a time in a helper, and the table code is faster (docs/performance.md, "Thin metadata").
//! [`crc32c`] times both once per process on a 4 KiB block and keeps the faster; they compute
//! the same function, so the choice changes speed only.

use super::source::{le_u32, Block, METADATA_BLOCK_SIZE};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Salt of the superblock checksum.
pub const SUPERBLOCK_CSUM_XOR: u32 = 160_774;
/// Salt of btree node checksums (all trees: mapping, details, space maps).
pub const BTREE_CSUM_XOR: u32 = 121_107;

/// The CRC-32C (Castagnoli) polynomial, bit-reversed.
const POLY: u32 = 0x82F6_3B78;

/// `TABLES[k][b]`: the CRC of byte `b` followed by `k` zero bytes (slicing-by-8).
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

/// Standard CRC-32C of `data`, table-driven (eight bytes per step, no special instructions).
pub fn crc32c_table(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ crc;
        crc = TABLES[7][(lo & 0xFF) as usize]
            ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
            ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][w[4] as usize]
            ^ TABLES[2][w[5] as usize]
            ^ TABLES[1][w[6] as usize]
            ^ TABLES[0][w[7] as usize];
    }
    for &b in words.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ u32::from(b)) & 0xFF) as usize];
    }
    !crc
}

/// Standard CRC-32C of `data` through the `crc32c` crate (SSE4.2 `crc32` when available).
pub fn crc32c_crate(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Standard CRC-32C of `data`, through whichever implementation timed faster here.
pub fn crc32c(data: &[u8]) -> u32 {
    static FASTEST: OnceLock<fn(&[u8]) -> u32> = OnceLock::new();
    FASTEST.get_or_init(pick_fastest)(data)
}

/// Time both implementations on one block (interleaved, best of several) and return the faster.
fn pick_fastest() -> fn(&[u8]) -> u32 {
    let block = [0x5Au8; METADATA_BLOCK_SIZE];
    let time = |f: fn(&[u8]) -> u32| {
        let t = Instant::now();
        std::hint::black_box(f(std::hint::black_box(&block[..])));
        t.elapsed()
    };
    let (mut table, mut krate) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        table = table.min(time(crc32c_table));
        krate = krate.min(time(crc32c_crate));
    }
    let fastest: fn(&[u8]) -> u32 = if table < krate {
        crc32c_table
    } else {
        crc32c_crate
    };
    tracing::debug!(?table, ?krate, "crc32c: timed one 4 KiB block");
    fastest
}

/// The checksum the kernel stores in `block` for a block of the type with `salt`.
pub fn compute(block: &Block, salt: u32) -> u32 {
    crc32c(&block[4..]) ^ 0xFFFF_FFFF ^ salt
}

/// Check `block`'s stored checksum; the error text gives both values.
pub fn verify(block: &Block, salt: u32) -> Result<(), String> {
    let stored = le_u32(block, 0);
    let computed = compute(block, salt);
    if stored == computed {
        Ok(())
    } else {
        Err(format!(
            "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ))
    }
}

/// Write the correct checksum into `block` (for building synthetic metadata in tests).
pub fn seal(block: &mut Block, salt: u32) {
    let csum = compute(block, salt);
    block[..4].copy_from_slice(&csum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_crc_is_standard_crc32c_without_final_inversion() {
        // Standard CRC-32C check value of "123456789" is 0xE3069283.
        let mut block = [0u8; 4096];
        block[4..13].copy_from_slice(b"123456789");
        let std = crc32c_crate(&block[4..]);
        assert_eq!(compute(&block, 0), std ^ 0xFFFF_FFFF);
        assert_eq!(crc32c_crate(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_table(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn table_and_crate_agree_on_every_length_and_alignment() {
        let bytes: Vec<u8> = (0..4200u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            for len in (0..100).chain([4091, 4092, 4096 - start]) {
                let data = &bytes[start..start + len];
                assert_eq!(
                    crc32c_table(data),
                    crc32c_crate(data),
                    "start {start} len {len}"
                );
            }
        }
        assert_eq!(crc32c(&bytes), crc32c_crate(&bytes));
    }

    #[test]
    fn seal_then_verify_and_salts_differ() {
        let mut block = [7u8; 4096];
        seal(&mut block, BTREE_CSUM_XOR);
        assert!(verify(&block, BTREE_CSUM_XOR).is_ok());
        assert!(verify(&block, SUPERBLOCK_CSUM_XOR).is_err());
        block[100] ^= 1;
        assert!(verify(&block, BTREE_CSUM_XOR).is_err());
    }
}
