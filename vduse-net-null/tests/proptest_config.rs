//! Property tests of vduse-net-null's configuration loader (`ConfigFile::parse` and
//! `Config::resolve`): arbitrary text never panics, and a wrong value of any key is an
//! error that names the key and its line. The checks are shared with the other servers
//! (vduse/tests/common).

#[path = "../../vduse/tests/common/config_props.rs"]
mod config_props;

use std::path::Path;

use config_props::{FILE, Loader, check_key_error, check_text, file_with, line, value};
use proptest::prelude::*;
use vduse::config::ConfigError;
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_value_of_any_key_is_accepted_or_named(
        key in proptest::sample::select(&KEYS[..]),
        value in value(),
    ) {
        let loader = loader();
        let (text, at) = file_with(&loader, key, &value);
        check_key_error(&loader, key, at, &text);
    }

    #[test]
    fn arbitrary_text_never_panics(lines in proptest::collection::vec(line(&KEYS), 0..8)) {
        check_text(&loader(), &lines.join("\n"));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_text(&loader(), &String::from_utf8_lossy(&bytes));
    }
}

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
