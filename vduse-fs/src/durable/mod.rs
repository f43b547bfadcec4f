//! [`DurableFs`]: the node IDs and file handles the guest holds, numbered by the server and
//! written down, so that a server started after a crash can take the device over.
//!
//! The guest's FUSE client names inodes by the node IDs lookups returned and open files by
//! the handles opens returned. Both are the passthrough's own numbers for objects only its
//! process had, so they die with it. This layer hands the guest numbers of its own, maps
//! them to the passthrough's, and appends each change of that map to a journal file (a
//! shared mapping of it: no system call per record) before the reply reaches the guest:
//! a node (its parent node, name and host inode number), a node forgotten, renamed, a
//! file opened (node and flags), released, and the options agreed at INIT. A server
//! taking over replays the journal: it looks every node up again by name from the root,
//! checks the host inode number, reopens every handle (never with `O_CREAT`, `O_EXCL` or
//! `O_TRUNC`) and answers the guest's old numbers.
//!
//! What cannot be brought back answers `ESTALE`: a node whose name no longer leads to the
//! same inode (renamed or removed on the host meanwhile, or unlinked while the guest held
//! it), and the handles open on it. The lookup counts are not journaled (a record per
//! lookup would make every request write one): nodes restored are kept until the guest
//! unmounts.
//!
//! The requests the killed server had in flight come again, and are served through
//! [`Replayed`], which answers as done the changes their first run made.

mod again;
mod journal;
mod layer;
mod record;
mod requests;
mod table;

pub use again::Replayed;
pub use journal::{JournalPlace, NodeJournal};
pub use layer::{DurableFs, Restored};

use std::io;

/// The root's node ID, the same for the guest and the passthrough.
const ROOT: u64 = 1;

fn errno<T>(code: i32) -> io::Result<T> {
    Err(io::Error::from_raw_os_error(code))
}
