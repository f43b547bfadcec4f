//! Serving as an unprivileged user (`user:` and `group:` in a server's configuration).
//!
//! Creating a device needs the control node (root's) and attaching it the vdpa bus's
//! netlink commands (CAP_NET_ADMIN). Once the device is attached, serving it needs
//! neither: the device node, the IOTLB files and the backend's files are open already, and
//! the kernel checks no privilege on their ioctls and mmaps. So a server switches to
//! `user`/`group` right after attaching, for every thread (glibc's `setresuid` applies to
//! all of a process's threads), and keeps one capability, CAP_NET_ADMIN, in its main
//! thread only: the one that takes the device off the vdpa bus at exit. Destroying the
//! device then goes through the control node opened at the start, which needs no
//! privilege. Every other thread, the queue workers included, ends with no capability.

use std::ffi::CString;
use std::fmt;

use caps::{CapSet, Capability, CapsHashSet};

/// The user and group a server switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user as given (a name or a number).
    pub user: String,
    /// Its user id.
    pub uid: u32,
    /// The group id: `group` if given, else the user's primary group.
    pub gid: u32,
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.user, self.uid, self.gid)
    }
}

/// Which key a [`resolve`] error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `user`.
    User,
    /// `group`.
    Group,
}

impl Key {
    /// The key's name in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Key::User => "user",
            Key::Group => "group",
        }
    }
}

/// Looks `user` (a name or a uid) and `group` (a name or a gid; `None`: the user's primary
/// group) up in the host's user database. The error names the key and what was not found.
pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, (Key, String)> {
    let (uid, primary_gid) = match lookup_user(user) {
        Some(found) => found,
        None => match user.parse::<u32>() {
            // A bare number need not be in the database; if it is not, its group must be
            // given.
            Ok(uid) => (uid, lookup_uid(uid)),
            Err(_) => {
                return Err((
                    Key::User,
                    format!("no user {user:?} on this host (`getent passwd {user}` finds none)"),
                ));
            }
        },
    };
    if uid == 0 {
        return Err((
            Key::User,
            format!("{user:?} is root: give an unprivileged user, or leave `user` out"),
        ));
    }
    let gid = match group {
        Some(group) => match lookup_group(group).or_else(|| group.parse::<u32>().ok()) {
            Some(gid) => gid,
            None => {
                return Err((
                    Key::Group,
                    format!("no group {group:?} on this host (`getent group {group}` finds none)"),
                ));
            }
        },
        None => primary_gid.ok_or_else(|| {
            (
                Key::Group,
                format!("user {user} is not in the user database, so it has no primary group: give `group`"),
            )
        })?,
    };
    Ok(RunAs {
        user: user.to_owned(),
        uid,
        gid,
    })
}

/// Switches every thread of the process to `run_as`, with no supplementary groups; the
/// calling thread keeps CAP_NET_ADMIN (effective and permitted), every other thread keeps
/// no capability. Must run as root. Checks the result: the switch cannot be undone.
pub fn drop_to(run_as: &RunAs) -> crate::Result<()> {
    let op = || format!("switching to user {run_as}");
    let failed = |source: std::io::Error| crate::Error::Io { op: op(), source };
    if !rustix::process::geteuid().is_root() {
        return Err(failed(std::io::Error::other(
            "switching users needs root: start the server as root, or leave `user` out",
        )));
    }
    let caps_failed =
        |error: caps::errors::CapsError| failed(std::io::Error::other(error.to_string()));
    // Keep the permitted set of this thread across the uid change (per thread: the others
    // lose theirs).
    caps::securebits::set_keepcaps(true).map_err(caps_failed)?;
    // SAFETY: plain system call wrappers with valid arguments; glibc applies each to every
    // thread of the process.
    let switched = unsafe {
        libc::setgroups(1, &run_as.gid) == 0
            && libc::setresgid(run_as.gid, run_as.gid, run_as.gid) == 0
            && libc::setresuid(run_as.uid, run_as.uid, run_as.uid) == 0
    };
    if !switched {
        return Err(failed(std::io::Error::last_os_error()));
    }
    let kept: CapsHashSet = [Capability::CAP_NET_ADMIN].into_iter().collect();
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(caps_failed)?;
    caps::set(None, CapSet::Permitted, &kept).map_err(caps_failed)?;
    caps::set(None, CapSet::Effective, &kept).map_err(caps_failed)?;
    caps::securebits::set_keepcaps(false).map_err(caps_failed)?;

    let ids = (
        rustix::process::getuid().as_raw(),
        rustix::process::geteuid().as_raw(),
        rustix::process::getgid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    if ids != (run_as.uid, run_as.uid, run_as.gid, run_as.gid) {
        return Err(failed(std::io::Error::other(format!(
            "the switch did not take: uid {}, euid {}, gid {}, egid {}",
            ids.0, ids.1, ids.2, ids.3
        ))));
    }
    Ok(())
}

/// An entry of the user or group database: plain C data, valid all-zero.
trait DbEntry {}
impl DbEntry for libc::passwd {}
impl DbEntry for libc::group {}

/// Runs one of libc's reentrant database lookups (`getpwnam_r` and the like) with a
/// zeroed entry and a buffer for its strings; returns the entry if one was found.
fn lookup<T: DbEntry>(
    call: impl FnOnce(*mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
) -> Option<T> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `T` is `passwd` or `group` (`DbEntry`), for which all-zero is valid (null
    // pointers, zero ids).
    let mut entry: T = unsafe { std::mem::zeroed() };
    let mut found: *mut T = std::ptr::null_mut();
    let rc = call(&mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found);
    // The entry's strings point into `buffer`, which goes now: only its ids are used.
    (rc == 0 && !found.is_null()).then_some(entry)
}

/// The user named `name`: its uid and primary group.
fn lookup_user(name: &str) -> Option<(u32, Option<u32>)> {
    let name = CString::new(name).ok()?;
    // SAFETY: every pointer is valid for the call and the buffer's length is its own.
    let entry = lookup(|entry, buffer, len, found| unsafe {
        libc::getpwnam_r(name.as_ptr(), entry, buffer, len, found)
    })?;
    Some((entry.pw_uid, Some(entry.pw_gid)))
}

/// The primary group of the user with id `uid`, if the database has that user.
fn lookup_uid(uid: u32) -> Option<u32> {
    // SAFETY: as in `lookup_user`.
    let entry = lookup(|entry, buffer, len, found| unsafe {
        libc::getpwuid_r(uid, entry, buffer, len, found)
    })?;
    Some(entry.pw_gid)
}

/// The id of the group named `name`.
fn lookup_group(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: as in `lookup_user`.
    let entry = lookup(|entry, buffer, len, found| unsafe {
        libc::getgrnam_r(name.as_ptr(), entry, buffer, len, found)
    })?;
    Some(entry.gr_gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        // Every host has these two in its databases.
        let nobody = resolve("nobody", None).unwrap();
        assert_ne!(nobody.uid, 0);
        let by_number = resolve(&nobody.uid.to_string(), Some(&nobody.gid.to_string())).unwrap();
        assert_eq!((by_number.uid, by_number.gid), (nobody.uid, nobody.gid));
        // A uid the database has brings its primary group along.
        let uid_only = resolve(&nobody.uid.to_string(), None).unwrap();
        assert_eq!(uid_only.gid, nobody.gid);
        let root_group = resolve("nobody", Some("root")).unwrap();
        assert_eq!(root_group.gid, 0);
    }

    #[test]
    fn unknown_names_root_and_groupless_numbers_are_refused() {
        let (key, error) = resolve("no-such-user-here", None).unwrap_err();
        assert_eq!(key, Key::User);
        assert!(error.contains("getent passwd no-such-user-here"), "{error}");
        let (key, error) = resolve("nobody", Some("no-such-group-here")).unwrap_err();
        assert_eq!(key, Key::Group);
        assert!(error.contains("getent group"), "{error}");
        let (key, error) = resolve("root", None).unwrap_err();
        assert_eq!(key, Key::User);
        assert!(error.contains("is root"), "{error}");
        // A uid in no database has no primary group.
        let (key, error) = resolve("4000000", None).unwrap_err();
        assert_eq!(key, Key::Group);
        assert!(error.contains("give `group`"), "{error}");
        assert_eq!(resolve("4000000", Some("4000001")).unwrap().gid, 4_000_001);
    }
}
