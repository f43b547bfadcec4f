//! Opening and sizing the backing: every configuration problem is an error that names the
//! path and the fix, and checking never changes anything.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vduse_blk::config::CacheMode;
use vduse_blk::disk::file::{FileDiskReport, FileKind};
use vduse_blk::{FileDisk, FileDiskError, FileDiskOptions};

fn options(path: &Path) -> FileDiskOptions {
    FileDiskOptions {
        path: path.to_owned(),
        size: None,
        create: false,
        read_only: false,
        cache: CacheMode::Writeback,
        logical_block_size: 512,
    }
}

fn file_of(dir: &tempfile::TempDir, len: usize) -> PathBuf {
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![1u8; len]).unwrap();
    path
}

fn open_error(options: &FileDiskOptions) -> String {
    let err = FileDisk::open(options).unwrap_err();
    assert!(
        !err.is_io(),
        "a configuration problem, not an I/O error: {err}"
    );
    err.to_string()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn a_file_serves_its_whole_length_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of(&dir, 64 << 10);
    let backing = FileDisk::open(&options(&path)).unwrap();
    assert_eq!(backing.size(), 64 << 10);
    assert_eq!(backing.kind(), FileKind::File);
    assert!(!backing.is_read_only());
    assert_eq!(backing.direct_alignment(), None);
    // A smaller size serves the front of the file.
    let backing = FileDisk::open(&FileDiskOptions {
        size: Some(4096),
        ..options(&path)
    })
    .unwrap();
    assert_eq!(backing.size(), 4096);
}

#[test]
fn a_missing_file_names_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.img");
    let message = open_error(&options(&path));
    assert_eq!(
        message,
        format!(
            "the backing file {0} does not exist: create it (for example `truncate -s 1G {0}`), \
             or set `create: true` and a `size`",
            path.display()
        )
    );
    let message = FileDisk::check(&options(&path)).unwrap_err().to_string();
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn create_makes_a_sparse_private_file_of_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.img");
    let create = FileDiskOptions {
        size: Some(1 << 30),
        create: true,
        ..options(&path)
    };
    // Checking only says what would happen.
    assert_eq!(
        FileDisk::check(&create).unwrap(),
        FileDiskReport {
            kind: FileKind::File,
            size: 1 << 30,
            pending: Some("would be created"),
        }
    );
    assert!(!path.exists());
    let backing = FileDisk::open(&create).unwrap();
    assert_eq!(backing.size(), 1 << 30);
    let metadata = std::fs::metadata(&path).unwrap();
    assert_eq!(metadata.len(), 1 << 30);
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    // In a directory that does not exist.
    let nowhere = FileDiskOptions {
        path: dir.path().join("no/such/dir/disk.img"),
        ..create
    };
    for message in [
        open_error(&nowhere),
        FileDisk::check(&nowhere).unwrap_err().to_string(),
    ] {
        assert!(
            message.contains("its directory does not exist"),
            "{message}"
        );
    }
}

#[test]
fn a_file_smaller_than_the_size_is_extended_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of(&dir, 4096);
    let larger = FileDiskOptions {
        size: Some(1 << 20),
        ..options(&path)
    };
    assert_eq!(
        open_error(&larger),
        format!(
            "size 1M is larger than the backing file {} (4096 bytes): set `create: true` to \
             extend the file, or lower `size`",
            path.display()
        )
    );
    let extend = FileDiskOptions {
        create: true,
        ..larger
    };
    assert_eq!(
        FileDisk::check(&extend).unwrap().pending,
        Some("would be extended")
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
    assert_eq!(FileDisk::open(&extend).unwrap().size(), 1 << 20);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    assert_eq!(std::fs::read(&path).unwrap()[..4096], [1u8; 4096]);
    // Never shrunk.
    let smaller = FileDiskOptions {
        size: Some(4096),
        ..extend
    };
    assert_eq!(FileDisk::open(&smaller).unwrap().size(), 4096);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
}

#[test]
fn sizes_that_are_not_whole_blocks_or_empty_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of(&dir, 10_000);
    assert_eq!(
        open_error(&options(&path)),
        format!(
            "the backing {} is 10000 bytes, not a multiple of the logical block size (512): \
             set `size: 9728` to serve the whole blocks",
            path.display()
        )
    );
    let message = open_error(&FileDiskOptions {
        logical_block_size: 4096,
        ..options(&path)
    });
    assert!(message.contains("set `size: 8192`"), "{message}");
    let path = file_of(&dir, 0);
    assert_eq!(
        open_error(&options(&path)),
        format!(
            "the backing {} is empty: give a `size` and set `create: true` to extend it",
            path.display()
        )
    );
}

#[test]
fn things_that_are_not_files_are_refused_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let message = open_error(&options(dir.path()));
    assert!(
        message.ends_with("is a directory, not a regular file or a block device"),
        "{message}"
    );
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let message = open_error(&options(&fifo));
    assert!(message.contains("is a FIFO"), "{message}");
    let message = open_error(&options(Path::new("/dev/null")));
    assert!(message.contains("is a character device"), "{message}");
}

/// Runs `body` on a thread of its own that, when this process is root, has given up
/// the capabilities that let root open any file (capabilities are per thread on Linux),
/// so that file modes apply to it as to any user.
fn as_if_unprivileged(body: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        if is_root() {
            use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
            let mut sets = capabilities(None).unwrap();
            let bypass = CapabilitySet::DAC_OVERRIDE | CapabilitySet::DAC_READ_SEARCH;
            sets.effective.remove(bypass);
            sets.permitted.remove(bypass);
            set_capabilities(None, sets).unwrap();
        }
        body();
    })
    .join()
    .unwrap();
}

#[test]
fn permission_problems_suggest_read_only() {
    as_if_unprivileged(permission_problems_suggest_read_only_body);
}

fn permission_problems_suggest_read_only_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of(&dir, 4096);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert_eq!(
        open_error(&options(&path)),
        format!(
            "permission denied opening the backing {} for reading and writing: give this user \
             access to it, or set `read-only: true`",
            path.display()
        )
    );
    let read_only = FileDiskOptions {
        read_only: true,
        ..options(&path)
    };
    let backing = FileDisk::open(&read_only).unwrap();
    assert!(backing.is_read_only());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    assert_eq!(
        open_error(&read_only),
        format!(
            "permission denied opening the backing {} for reading: give this user access to it",
            path.display()
        )
    );
}

#[test]
fn cache_none_opens_with_o_direct_and_needs_aligned_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_of(&dir, 64 << 10);
    match FileDisk::open(&FileDiskOptions {
        cache: CacheMode::None,
        logical_block_size: 4096,
        ..options(&path)
    }) {
        Ok(backing) => assert_eq!(backing.direct_alignment(), Some(4096)),
        Err(FileDiskError::DirectIoUnsupported { .. }) => {
            eprintln!("skipped: no O_DIRECT in the temporary directory")
        }
        Err(err) => panic!("{err}"),
    }
}

#[test]
fn block_device_sizes_are_checked_against_the_device() {
    // Without a block device to open, check the rule through the error's message.
    let err = FileDiskError::LargerThanDevice {
        path: "/dev/sdz".into(),
        size: 2 << 30,
        available: 1 << 30,
    };
    assert_eq!(
        err.to_string(),
        "size 2G is larger than the block device /dev/sdz (1073741824 bytes): lower `size` or \
         leave it out"
    );
    assert!(!err.is_io());
}
