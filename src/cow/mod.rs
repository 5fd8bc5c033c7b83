//! Reader for the persistent exception store of a classic (COW) snapshot's `-cow` device.

use crate::error::{Error, Result};
use crate::ChangeSet;
use std::path::Path;

/// The changed extents recorded in the exception store held in the file or device at `path`.
pub fn changes_from_file(_path: &Path) -> Result<ChangeSet> {
    Err(Error::NotImplemented("reading COW exception stores"))
}
