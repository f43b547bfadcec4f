//! Property tests of vduse-blk's configuration loader (`ConfigFile::parse` and
//! `Config::resolve`): arbitrary text never panics, a wrong value of any key is an error
//! that names the key and its line, and arbitrary flags never panic and are named as
//! flags. The checks are shared with the other servers (`vduse_testkit::config_props`).

use vduse_testkit::config_props;

use std::path::Path;

use config_props::{FILE, Loader};
use proptest::prelude::*;
use vduse_blk::Config;
use vduse_blk::config::{ConfigFile, KEYS, Settings};
use vduse_kit::config::{ByteSize, ConfigError, Origin};

fn resolve(text: &str) -> Result<(), ConfigError> {
    let file = ConfigFile::parse(Path::new(FILE), text.to_owned())?;
    Config::resolve(Some(&file), &Settings::default()).map(|_| ())
}

fn loader() -> Loader {
    Loader {
        base: vec![
            ("name", "disk0".into()),
            ("backing", "/var/lib/vduse/disk0.img".into()),
        ],
        switches: &["backend", "nbd-uri"],
        resolve,
    }
}

config_props::config_properties!(loader, KEYS);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Flags take the same values without YAML in between: errors name the flag.
    #[test]
    fn arbitrary_flags_never_panic_and_are_named_as_flags(
        // The top of the range, where a hint once overflowed, gets a share of its own.
        size in proptest::option::of(prop_oneof![
            any::<u64>(),
            0u64..1 << 20,
            u64::MAX - 8192..=u64::MAX,
        ]),
        logical_block_size in proptest::option::of(prop_oneof![any::<u32>(), Just(512u32), Just(4096)]),
        physical_block_size in proptest::option::of(any::<u32>()),
        num_queues in proptest::option::of(any::<u16>()),
        queue_size in proptest::option::of(any::<u16>()),
        serial in proptest::option::of(".{0,30}"),
        bounce_size in proptest::option::of(any::<u64>()),
        busy_poll_us in proptest::option::of(any::<u32>()),
        name in prop_oneof![Just("d".to_owned()), ".{0,300}"],
        create in proptest::option::of(any::<bool>()),
    ) {
        let flags = Settings {
            name: Some(name),
            backing: Some("/x".into()),
            size: size.map(ByteSize),
            create,
            logical_block_size,
            physical_block_size,
            num_queues,
            queue_size,
            serial,
            bounce_size: bounce_size.map(ByteSize),
            busy_poll_us,
            ..Settings::default()
        };
        if let Err(error) = Config::resolve(None, &flags) {
            let message = error.to_string();
            match error {
                ConfigError::Invalid { origin, key, .. } => {
                    prop_assert_eq!(origin, Origin::Flag);
                    let flag = format!("--{key}: ");
                    prop_assert!(message.starts_with(&flag), "{}", message);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}

#[test]
fn huge_sizes_are_errors_that_name_the_key() {
    for (value, says) in [
        (
            "18446744073709550593",
            "is not a multiple of the logical block size",
        ),
        ("20000000T", "is too large: sizes must fit in 64 bits"),
        ("99999999999999999999", "size: "),
        ("-4096", "size: "),
    ] {
        let message = resolve(&format!("name: d\nbacking: /x\nsize: {value}\n"))
            .unwrap_err()
            .to_string();
        assert!(message.contains(says), "{value}: {message}");
        assert!(message.contains("line 3"), "{value}: {message}");
    }
}

/// Found by `arbitrary_flags_never_panic_and_are_named_as_flags`: the hint of the error
/// (`use LOWER or HIGHER`) overflowed.
#[test]
fn the_largest_size_that_is_not_whole_blocks_is_an_error() {
    let message = resolve("name: d\nbacking: /x\nsize: 18446744073709551615\n")
        .unwrap_err()
        .to_string();
    assert!(message.contains("size: "), "{message}");
    assert!(
        message.contains("not a multiple of the logical block size"),
        "{message}"
    );
}
