//! Online resize: a configuration reloaded on SIGHUP, checked against the one the device
//! is served with, and the size it asks for.
//!
//! Only the disk's size can change while the device is served: `size` (or, without it, the
//! backing file's, block device's or NBD export's own size, read again) and `create`,
//! which lets a larger `size` extend the backing file; and `stats-interval`, which is the
//! server's own business. Every other key shapes what the
//! driver already negotiated (queues, block sizes, features) or where the data is, so a
//! reload that changes one is refused as a whole and the device goes on as it was.
//!
//! A disk only grows. The guest may hold data (a file system) up to the end of the disk it
//! knows, and Linux's virtio_blk applies a smaller capacity at once, whatever is mounted:
//! a smaller size is refused, and shrinking means stopping the device first.
//!
//! The new size reaches the driver as the `capacity` field of the config space and a
//! config interrupt (`VDUSE_DEV_SET_CONFIG`, `VDUSE_DEV_INJECT_CONFIG_IRQ`); see
//! `vduse::runtime::Server::reconfigure`.

use crate::config::Config;
use crate::disk::FileDisk;
use crate::disk::file::FileDiskOptions;
use crate::nbd::NbdDisk;

/// The keys a reload may change: the size, and how often the counters are printed.
const CHANGEABLE: &[&str] = &["size", "create", "stats-interval"];

/// Why a reloaded configuration was not applied. The device goes on unchanged.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Keys other than `size`, `create` and `stats-interval` differ.
    #[error(
        "{} cannot change while the device is served: restart vduse-blk to change {}, \
         or put {} back as {}",
        keys.join(", "),
        if keys.len() == 1 { "it" } else { "them" },
        if keys.len() == 1 { "it" } else { "them" },
        if keys.len() == 1 { "it was" } else { "they were" },
    )]
    FixedKeys {
        /// The keys that differ, in the order `--print-config` shows them.
        keys: Vec<String>,
    },
    /// The new size is smaller.
    #[error(
        "the disk would shrink from {from} to {to} bytes: the guest may hold data up to its \
         end, so a served disk only grows; stop the device to shrink it"
    )]
    Shrink {
        /// The size served now.
        from: u64,
        /// The size the configuration asks for.
        to: u64,
    },
    /// The backing or the export cannot be used at the new size.
    #[error("{0}")]
    Disk(String),
}

/// The keys whose values differ between `running` and `reloaded`, besides those a reload
/// may change.
pub fn fixed_keys_changed(running: &Config, reloaded: &Config) -> Vec<String> {
    let as_map = |config: &Config| match serde_yaml::to_value(config) {
        Ok(serde_yaml::Value::Mapping(map)) => map,
        _ => serde_yaml::Mapping::new(),
    };
    let (before, after) = (as_map(running), as_map(reloaded));
    let mut keys: Vec<String> = Vec::new();
    for key in before.keys().chain(after.keys()) {
        let Some(name) = key.as_str() else {
            continue;
        };
        if CHANGEABLE.contains(&name) || keys.iter().any(|seen| seen == name) {
            continue;
        }
        if before.get(key) != after.get(key) {
            keys.push(name.to_owned());
        }
    }
    keys
}

/// The size `reloaded` asks for when the device, configured by `running`, serves `current`
/// bytes: `None` when it is the same. A file is extended when `reloaded` says
/// `create: true` and a larger `size`; nothing is changed when the reload is refused.
pub fn new_size(running: &Config, reloaded: &Config, current: u64) -> Result<Option<u64>, Refused> {
    let keys = fixed_keys_changed(running, reloaded);
    if !keys.is_empty() {
        return Err(Refused::FixedKeys { keys });
    }
    let disk_error = |error: &dyn std::fmt::Display| Refused::Disk(error.to_string());
    let (size, extend) = match reloaded.nbd_options() {
        Some(options) => {
            let report = NbdDisk::check(&options).map_err(|e| disk_error(&e))?;
            (report.info.size, false)
        }
        None => {
            let options = FileDiskOptions::from(reloaded);
            let report = FileDisk::check(&options).map_err(|e| disk_error(&e))?;
            (report.size, report.pending.is_some())
        }
    };
    if size < current {
        return Err(Refused::Shrink {
            from: current,
            to: size,
        });
    }
    if size == current {
        return Ok(None);
    }
    if extend {
        FileDisk::open(&FileDiskOptions::from(reloaded)).map_err(|e| disk_error(&e))?;
    }
    Ok(Some(size))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Settings;

    fn config(yaml: &str, dir: &Path) -> Config {
        let path = dir.join("disk.yaml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(Some(&path), &Settings::default()).unwrap()
    }

    fn backing(dir: &Path, len: u64) -> String {
        let path = dir.join("disk.img");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap();
        file.set_len(len).unwrap();
        format!("name: d0\nbacking: {}\n", path.display())
    }

    #[test]
    fn a_grown_backing_file_is_the_new_size() {
        let dir = tempfile::tempdir().unwrap();
        let running = config(&backing(dir.path(), 1 << 20), dir.path());
        assert_eq!(new_size(&running, &running, 1 << 20).unwrap(), None);
        let reloaded = config(&backing(dir.path(), 3 << 20), dir.path());
        assert_eq!(
            new_size(&running, &reloaded, 1 << 20).unwrap(),
            Some(3 << 20)
        );
    }

    #[test]
    fn a_larger_size_with_create_extends_the_file_and_without_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = backing(dir.path(), 1 << 20);
        let running = config(&base, dir.path());
        let refused = new_size(
            &running,
            &config(&format!("{base}size: 2M\n"), dir.path()),
            1 << 20,
        )
        .unwrap_err();
        assert!(
            matches!(refused, Refused::Disk(ref text) if text.contains("set `create: true`")),
            "{refused}"
        );
        let reloaded = config(&format!("{base}size: 2M\ncreate: true\n"), dir.path());
        assert_eq!(
            new_size(&running, &reloaded, 1 << 20).unwrap(),
            Some(2 << 20)
        );
        let len = std::fs::metadata(dir.path().join("disk.img"))
            .unwrap()
            .len();
        assert_eq!(len, 2 << 20);
    }

    #[test]
    fn shrinking_a_size_not_in_whole_blocks_and_fixed_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = backing(dir.path(), 4 << 20);
        let base = format!("{file}logical-block-size: 4096\n");
        let running = config(&base, dir.path());
        let shrink = config(&format!("{base}size: 2M\n"), dir.path());
        let refused = new_size(&running, &shrink, 4 << 20).unwrap_err();
        assert!(
            matches!(
                refused,
                Refused::Shrink {
                    from: 0x40_0000,
                    to: 0x20_0000
                }
            ),
            "{refused}"
        );
        assert!(refused.to_string().contains("stop the device to shrink it"));
        let other_blocks = config(&format!("{file}logical-block-size: 512\n"), dir.path());
        let refused = new_size(&running, &other_blocks, 4 << 20).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "logical-block-size cannot change while the device is served: restart \
             vduse-blk to change it, or put it back as it was"
        );
        // A backing that grew by less than a block (a `size` that is not whole blocks is
        // already refused when the configuration is read).
        backing(dir.path(), (4 << 20) + 512);
        let refused = new_size(&running, &running, 4 << 20).unwrap_err();
        assert!(
            matches!(refused, Refused::Disk(ref text) if text.contains("not a multiple of the logical block size")),
            "{refused}"
        );
        let queues = config(&format!("{base}num-queues: 2\nserial: other\n"), dir.path());
        assert_eq!(
            fixed_keys_changed(&running, &queues),
            ["num-queues", "serial"]
        );
    }
}
