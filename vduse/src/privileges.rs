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
/// group) up in the host's user database. The error names the key and what was not found,
/// or why the database could not answer.
pub fn resolve(user: &str, group: Option<&str>) -> Result<RunAs, (Key, String)> {
    let unanswered = |key: Key, what: &str, error: std::io::Error| {
        (
            key,
            format!(
                "cannot look {what} up in the host's {} database: {error}",
                key.name()
            ),
        )
    };
    let user_failed = |error| unanswered(Key::User, &format!("user {user:?}"), error);
    let (uid, primary_gid) = match lookup_user(user).map_err(user_failed)? {
        Some(found) => found,
        None => match user.parse::<u32>() {
            // A bare number need not be in the database; if it is not, its group must be
            // given.
            Ok(uid) => (uid, lookup_uid(uid).map_err(user_failed)?),
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
        Some(group) => {
            let found = lookup_group(group)
                .map_err(|error| unanswered(Key::Group, &format!("group {group:?}"), error))?;
            match found.or_else(|| group.parse::<u32>().ok()) {
                Some(gid) => gid,
                None => {
                    return Err((
                        Key::Group,
                        format!(
                            "no group {group:?} on this host (`getent group {group}` finds none)"
                        ),
                    ));
                }
            }
        }
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

/// The buffer a look-up starts with when libc suggests no size.
const FIRST_BUFFER_SIZE: usize = 16 * 1024;

/// The largest buffer a look-up tries. A group's entry holds its members' names, so a
/// group of a directory service can need megabytes; one that needs more than this is
/// taken for a broken database rather than allocated for.
const MAX_BUFFER_SIZE: usize = 64 * 1024 * 1024;

/// The buffer size libc suggests for one of its look-ups (`_SC_GETPW_R_SIZE_MAX` or
/// `_SC_GETGR_R_SIZE_MAX`): a first guess only, as the look-ups themselves ask for more
/// with ERANGE.
fn suggested_buffer_size(name: libc::c_int) -> usize {
    // SAFETY: sysconf only reads a setting; an unknown one gives -1.
    let suggested = unsafe { libc::sysconf(name) };
    usize::try_from(suggested)
        .ok()
        .filter(|&size| size > 0)
        .unwrap_or(FIRST_BUFFER_SIZE)
}

/// Runs one of libc's reentrant database look-ups (`getpwnam_r` and the like) with a
/// zeroed entry and a buffer for its strings, `first_size` bytes at first and twice as big
/// each time the look-up answers ERANGE (the entry does not fit), up to
/// [`MAX_BUFFER_SIZE`]. `Ok(None)`: there is no such entry; an error: the database could
/// not answer.
fn lookup<T: DbEntry>(
    first_size: usize,
    mut call: impl FnMut(*mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
) -> std::io::Result<Option<T>> {
    let mut size = first_size.clamp(1, MAX_BUFFER_SIZE);
    loop {
        let mut buffer = vec![0 as libc::c_char; size];
        // SAFETY: `T` is `passwd` or `group` (`DbEntry`), for which all-zero is valid (null
        // pointers, zero ids).
        let mut entry: T = unsafe { std::mem::zeroed() };
        let mut found: *mut T = std::ptr::null_mut();
        // The entry's strings point into `buffer`, which goes at the end of this round:
        // only its ids are used.
        match call(&mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(entry)),
            libc::ERANGE if size < MAX_BUFFER_SIZE => {
                size = size.saturating_mul(2).min(MAX_BUFFER_SIZE);
            }
            libc::ERANGE => {
                return Err(std::io::Error::other(format!(
                    "the entry does not fit in {} MiB",
                    MAX_BUFFER_SIZE >> 20
                )));
            }
            // getpwnam_r(3) lists ENOENT among the ways of saying "no such entry", and
            // glibc answers it when a database is not there at all (no /etc/group, say):
            // `getent` finds nothing either.
            libc::ENOENT => return Ok(None),
            errno => return Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

/// The user named `name`: its uid and primary group.
fn lookup_user(name: &str) -> std::io::Result<Option<(u32, Option<u32>)>> {
    // A name with a NUL byte is in no database.
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    let size = suggested_buffer_size(libc::_SC_GETPW_R_SIZE_MAX);
    // SAFETY: every pointer is valid for the call and the buffer's length is its own.
    let entry = lookup(size, |entry, buffer, len, found| unsafe {
        libc::getpwnam_r(name.as_ptr(), entry, buffer, len, found)
    })?;
    Ok(entry.map(|entry| (entry.pw_uid, Some(entry.pw_gid))))
}

/// The primary group of the user with id `uid`, if the database has that user.
fn lookup_uid(uid: u32) -> std::io::Result<Option<u32>> {
    let size = suggested_buffer_size(libc::_SC_GETPW_R_SIZE_MAX);
    // SAFETY: as in `lookup_user`.
    let entry = lookup(size, |entry, buffer, len, found| unsafe {
        libc::getpwuid_r(uid, entry, buffer, len, found)
    })?;
    Ok(entry.map(|entry| entry.pw_gid))
}

/// The id of the group named `name`, if the database has that group.
fn lookup_group(name: &str) -> std::io::Result<Option<u32>> {
    // A name with a NUL byte is in no database.
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    let size = suggested_buffer_size(libc::_SC_GETGR_R_SIZE_MAX);
    // SAFETY: as in `lookup_user`.
    let entry = lookup(size, |entry, buffer, len, found| unsafe {
        libc::getgrnam_r(name.as_ptr(), entry, buffer, len, found)
    })?;
    Ok(entry.map(|entry| entry.gr_gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{c_char, c_int, group};

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

    /// A look-up standing in for libc's: its entry needs `needed` bytes of buffer, so it
    /// answers ERANGE below that; it records the buffer sizes it was given.
    fn needing(
        needed: usize,
        sizes: &mut Vec<usize>,
    ) -> impl FnMut(*mut group, *mut c_char, usize, *mut *mut group) -> c_int {
        move |entry, _, len, found| {
            sizes.push(len);
            if len < needed {
                return libc::ERANGE;
            }
            // SAFETY: `lookup` passes pointers to its own entry and result.
            unsafe {
                (*entry).gr_gid = 4242;
                *found = entry;
            }
            0
        }
    }

    #[test]
    fn lookups_retry_with_twice_the_buffer_until_the_entry_fits() {
        let mut sizes = Vec::new();
        let entry = lookup(1024, needing(100 * 1024, &mut sizes)).unwrap();
        assert_eq!(entry.map(|entry| entry.gr_gid), Some(4242));
        assert_eq!(sizes, [1, 2, 4, 8, 16, 32, 64, 128].map(|kib| kib * 1024));

        // An entry bigger than any buffer tried is an error, not "no such group".
        let mut sizes = Vec::new();
        let error = lookup(FIRST_BUFFER_SIZE, needing(usize::MAX, &mut sizes)).unwrap_err();
        assert!(
            error.to_string().contains("does not fit in 64 MiB"),
            "{error}"
        );
        assert_eq!(sizes.first(), Some(&FIRST_BUFFER_SIZE));
        assert_eq!(sizes.last(), Some(&MAX_BUFFER_SIZE));
        assert_eq!(sizes.len(), 13);
    }

    #[test]
    fn lookups_tell_no_entry_from_a_database_that_cannot_answer() {
        let answering = |rc: c_int| {
            lookup::<group>(FIRST_BUFFER_SIZE, move |_, _, _, _| rc)
                .map(|entry| entry.is_some())
                .map_err(|error| error.raw_os_error())
        };
        // Found nothing: 0 and no entry, or ENOENT.
        assert_eq!(answering(0), Ok(false));
        assert_eq!(answering(libc::ENOENT), Ok(false));
        // Anything else is the database's failure, reported as such.
        assert_eq!(answering(libc::EIO), Err(Some(libc::EIO)));
        assert_eq!(answering(libc::EMFILE), Err(Some(libc::EMFILE)));
    }

    /// The environment variable naming the group file a re-executed test binds over
    /// `/etc/group` in the mount namespace `unshare(1)` made for it.
    const GROUP_FILE_VAR: &str = "VDUSE_PRIVILEGES_TEST_GROUP_FILE";

    #[test]
    fn a_group_too_big_for_a_small_buffer_is_found() {
        if let Some(group_file) = std::env::var_os(GROUP_FILE_VAR) {
            // Re-executed alone, in a mount namespace of its own (see below): nothing
            // this does reaches the host's.
            rustix::mount::mount_bind(&group_file, "/etc/group").expect("binding /etc/group");
            assert_eq!(resolve("nobody", Some("vduse-big")).unwrap().gid, 4_000_123);
            // The host's groups are still there.
            assert_eq!(resolve("nobody", Some("root")).unwrap().gid, 0);
            return;
        }
        // glibc would ask nscd rather than read the file.
        assert!(
            !std::path::Path::new("/var/run/nscd/socket").exists(),
            "nscd answers group look-ups on this host, not /etc/group: stop nscd to run this test"
        );
        // 4000 members of 11 bytes each: their names alone are more than 40 KiB.
        let members: Vec<String> = (0..4000).map(|n| format!("member{n:05}")).collect();
        let mut groups = std::fs::read_to_string("/etc/group").unwrap();
        groups.push_str(&format!("vduse-big:x:4000123:{}\n", members.join(",")));
        let group_file = std::env::temp_dir().join(format!(
            "vduse-privileges-test-{}-group",
            std::process::id()
        ));
        std::fs::write(&group_file, groups).unwrap();
        // This test again, alone, in a mount namespace of its own; without root, inside a
        // user namespace that maps this user to root, so that it may mount there.
        let mut unshare = std::process::Command::new("unshare");
        unshare.arg("--mount");
        if !rustix::process::geteuid().is_root() {
            unshare.arg("--user").arg("--map-root-user");
        }
        let output = unshare
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "privileges::tests::a_group_too_big_for_a_small_buffer_is_found",
            ])
            .args(["--nocapture", "--test-threads", "1"])
            .env(GROUP_FILE_VAR, &group_file)
            .output()
            .expect("running unshare (util-linux)");
        std::fs::remove_file(&group_file).unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "in a mount namespace of its own:\n{said}"
        );
        assert!(
            said.contains("1 passed"),
            "the test did not run again:\n{said}"
        );
    }
}
