//! Reader for thin-pool metadata and the diff of two thin devices.

use crate::error::{Error, Result};
use crate::ChangeSet;
use std::path::Path;

/// The diff between thin devices `snap1` (older; `None` = everything mapped in `snap2`) and
/// `snap2` (newer), read from the thin-pool metadata in the file or device at `path`.
pub fn diff_metadata_file(_path: &Path, _snap1: Option<u64>, _snap2: u64) -> Result<ChangeSet> {
    Err(Error::NotImplemented("reading thin-pool metadata"))
}
