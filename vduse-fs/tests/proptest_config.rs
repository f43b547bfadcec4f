//! Property tests of vduse-fs's configuration loader (`ConfigFile::parse` and
//! `Config::resolve`): arbitrary text never panics, and a wrong value of any key is an
//! error that names the key and its line. The checks are shared with the other servers
//! (`vduse_testkit::config_props`).

use vduse_testkit::config_props;

use std::path::Path;

use config_props::{FILE, Loader};
use vduse_fs::Config;
use vduse_fs::config::{ConfigFile, KEYS, Settings};
use vduse_kit::config::ConfigError;

fn resolve(text: &str) -> Result<(), ConfigError> {
    let file = ConfigFile::parse(Path::new(FILE), text.to_owned())?;
    Config::resolve(Some(&file), &Settings::default()).map(|_| ())
}

fn loader() -> Loader {
    Loader {
        // `/` exists everywhere, so only the key under test can be wrong.
        base: vec![("name", "fs0".into()), ("shared-dir", "/".into())],
        // Without `tag`, the name is the tag: a name too long for a tag blames `tag`.
        switches: &["name"],
        resolve,
    }
}

config_props::config_properties!(loader, KEYS);
