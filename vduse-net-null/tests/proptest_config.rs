//! Property tests of vduse-net-null's configuration loader (`ConfigFile::parse` and
//! `Config::resolve`): arbitrary text never panics, and a wrong value of any key is an
//! error that names the key and its line. The checks are shared with the other servers
//! (`vduse_testkit::config_props`).

use vduse_testkit::config_props;

use std::path::Path;

use config_props::{FILE, Loader};
use vduse_kit::config::ConfigError;
use vduse_net_null::Config;
use vduse_net_null::config::{ConfigFile, KEYS, Settings};

fn resolve(text: &str) -> Result<(), ConfigError> {
    let file = ConfigFile::parse(Path::new(FILE), text.to_owned())?;
    Config::resolve(Some(&file), &Settings::default()).map(|_| ())
}

fn loader() -> Loader {
    Loader {
        base: vec![("name", "net0".into())],
        switches: &[],
        resolve,
    }
}

config_props::config_properties!(loader, KEYS);

/// Found by `any_value_of_any_key_is_accepted_or_named`: a bad MAC address was reported
/// without its key or line.
#[test]
fn a_bad_mac_names_the_key_and_the_line() {
    for value in ["''", "02:00", "zz:00:00:00:00:00"] {
        let message = resolve(&format!("name: n\nmac: {value}\n"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("prop.yaml: mac: "), "{message}");
        assert!(message.contains("not a MAC address"), "{message}");
        assert!(message.contains("at line 2 column 6"), "{message}");
    }
}
