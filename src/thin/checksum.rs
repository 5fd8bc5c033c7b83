//! Block checksums of thin-pool metadata.
//!
//! Every metadata block starts with a `u32` checksum of its remaining 4092 bytes:
//! the kernel's `crc32c(~0, bytes[4..])` (which, unlike the standard CRC-32C, has no final
//! inversion) XORed with a salt that differs per block type, so a block of one type can't pass
//! as another. The standard CRC-32C is the kernel's value XOR `0xFFFF_FFFF`.

use super::source::{le_u32, Block};

/// Salt of the superblock checksum.
pub const SUPERBLOCK_CSUM_XOR: u32 = 160_774;
/// Salt of btree node checksums (all trees: mapping, details, space maps).
pub const BTREE_CSUM_XOR: u32 = 121_107;

/// The checksum the kernel stores in `block` for a block of the type with `salt`.
pub fn compute(block: &Block, salt: u32) -> u32 {
    crc32c::crc32c(&block[4..]) ^ 0xFFFF_FFFF ^ salt
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
        let std = crc32c::crc32c(&block[4..]);
        assert_eq!(compute(&block, 0), std ^ 0xFFFF_FFFF);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
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
