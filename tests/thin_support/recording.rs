//! A metadata source that passes reads through and keeps each block read, in order: which
//! nodes a diff touches, and their bytes to replay. Shared by tests/thin_read_ahead.rs and the
//! guest's node-cost measurement (vm-tests, which includes this file by path).

use lvmsync::thin::source::Block;
use lvmsync::thin::MetadataSource;
use std::cell::RefCell;

/// Reads of `inner`, recorded as `(block number, contents)` in the order they happened.
pub struct Recording<'a> {
    inner: &'a dyn MetadataSource,
    read: RefCell<Vec<(u64, Box<Block>)>>,
}

impl<'a> Recording<'a> {
    /// Record the reads made through the new source.
    pub fn new(inner: &'a dyn MetadataSource) -> Self {
        Recording {
            inner,
            read: RefCell::new(Vec::new()),
        }
    }

    /// Forget what was recorded so far.
    pub fn clear(&self) {
        self.read.borrow_mut().clear();
    }

    /// The reads recorded, in order.
    pub fn into_reads(self) -> Vec<(u64, Box<Block>)> {
        self.read.into_inner()
    }
}

impl MetadataSource for Recording<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }
    fn read_block(&self, n: u64, buf: &mut Block) -> lvmsync::Result<()> {
        self.inner.read_block(n, buf)?;
        self.read.borrow_mut().push((n, Box::new(*buf)));
        Ok(())
    }
}
