//! Two pieces of work at once, on the calling thread and one scoped thread.
//!
//! The parse's tail (sorting, building the result list) runs after the last read; with the
//! store in the page cache it is most of the parse, and this machine class has two cores.

/// Run `a` on this thread and `b` on a scoped thread (both here, one after the other, unless
/// `parallel`), and return both results. A panic in `b` is passed on.
pub fn both<A: Send, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(b);
        let first = a();
        match other.join() {
            Ok(second) => (first, second),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
