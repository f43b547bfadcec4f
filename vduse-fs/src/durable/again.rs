//! Requests run again: a request a killed server had in flight comes to the server taking
//! over once more, and may have been carried out already. The layer needs to know which
//! request is such a one to answer it as done instead of with the error a second run gets.

use std::io;

thread_local! {
    /// The request this thread serves is one a killed server had in flight.
    static AGAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `serve` for a request, telling [`DurableFs`](super::DurableFs) whether a killed server had it in
/// flight (`again`), in which case it may have been carried out already.
pub fn running_again<T>(again: bool, serve: impl FnOnce() -> T) -> T {
    AGAIN.with(|flag| flag.set(again));
    let result = serve();
    AGAIN.with(|flag| flag.set(false));
    result
}

/// Whether `result` is the error a request that a killed server carried out gets when it
/// runs again (`errno`: ENOENT for a removal or rename, EEXIST for a creation); then it
/// was done, and is answered as such.
pub(super) fn done_before<T>(result: &io::Result<T>, errno: i32, what: &str) -> bool {
    let done = matches!(result, Err(error) if error.raw_os_error() == Some(errno))
        && AGAIN.with(|flag| flag.get());
    if done {
        log::info!("{what} run again after a takeover had been done: answered as done");
    }
    done
}
