//! Bad input the other suites do not cover: sizes too large for any file, tried against
//! the backing, and device names too long or with `/`, tried through the configuration.

use std::path::Path;

use vduse_blk::config::{CacheMode, ConfigFile, Settings};
use vduse_blk::{Config, FileDisk, FileDiskOptions};

fn options(path: &Path, size: u64) -> FileDiskOptions {
    FileDiskOptions {
        path: path.to_owned(),
        size: Some(size),
        create: true,
        read_only: false,
        cache: CacheMode::Writeback,
        logical_block_size: 512,
    }
}

#[test]
fn a_size_no_file_can_have_is_an_error_naming_the_backing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.img");
    for size in [1u64 << 62, u64::MAX - 511] {
        let error = FileDisk::open(&options(&path, size)).unwrap_err();
        let message = error.to_string();
        // The file system refuses to extend the file: an I/O error (exit 74).
        assert!(error.is_io(), "{message}");
        assert!(
            message.starts_with(&format!("extending {}: ", path.display())),
            "{message}"
        );
    }
}

#[test]
fn device_names_too_long_or_with_a_slash_name_the_key() {
    for (name, says) in [
        ("a".repeat(256), "the device name is 256 bytes long"),
        ("disk/0".to_owned(), "cannot name a node"),
        ("..".to_owned(), "cannot name a node"),
    ] {
        let text = format!("name: \"{name}\"\nbacking: /x\n");
        let file = ConfigFile::parse(Path::new("disk.yaml"), text).unwrap();
        let message = Config::resolve(Some(&file), &Settings::default())
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("disk.yaml: name: "), "{message}");
        assert!(message.contains(says), "{message}");
        assert!(message.contains("at line 1 column 7"), "{message}");
        // The same name as a flag.
        let flags = Settings {
            name: Some(name.clone()),
            backing: Some("/x".into()),
            ..Settings::default()
        };
        let message = Config::resolve(None, &flags).unwrap_err().to_string();
        assert!(message.starts_with("--name: "), "{message}");
    }
}
