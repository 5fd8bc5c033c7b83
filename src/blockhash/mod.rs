//! Block-hash compare: the change source for devices and images without snapshot metadata.

use crate::error::{Error, Result};
use crate::units::Bytes;
use crate::ChangeSet;
use std::path::Path;

/// The blocks of `block_size` bytes whose contents differ between `old` and `new`.
pub fn compare_files(_old: &Path, _new: &Path, _block_size: Bytes) -> Result<ChangeSet> {
    Err(Error::NotImplemented("block-hash compare"))
}
