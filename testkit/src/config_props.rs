//! What the property tests of the three servers' configuration loaders share: YAML values
//! of every kind (and of no sensible kind), files built around one key, and the checks
//! that every error names the key at fault and the line it is on.
//!
//! The loaders are all `vduse_kit::config::ConfigFile` plus a tool's `Config::resolve`, so
//! one set of checks covers them; each server's `tests/proptest_config.rs` uses this
//! module and says which keys it has and which ones it cannot do without.

use proptest::prelude::*;
use vduse_kit::config::{ConfigError, Origin};

/// A configuration loader under test.
#[derive(Debug)]
pub struct Loader {
    /// Keys and values every file has unless the test replaces one (the required ones).
    pub base: Vec<(&'static str, String)>,
    /// Keys whose value decides which other keys are needed: an error may name the other
    /// key (`backend: nbd` without `nbd-uri` says `nbd-uri is not set`).
    pub switches: &'static [&'static str],
    /// Parses `text` as the file `FILE` and resolves it with no flags.
    pub resolve: fn(&str) -> Result<(), ConfigError>,
}

/// The name the loaders are given for the file.
pub const FILE: &str = "prop.yaml";

/// `text` as a YAML double-quoted scalar, whatever it holds.
pub fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A YAML value (one line, valid YAML) of any kind: numbers in and out of every range,
/// sizes, booleans, nulls, strings short and long, with `/`, NUL or non-ASCII, lists and
/// maps.
pub fn value() -> impl Strategy<Value = String> {
    let fixed = prop_oneof![
        Just("0"),
        Just("1"),
        Just("-1"),
        Just("3"),
        Just("512"),
        Just("4096"),
        Just("65535"),
        Just("65536"),
        Just("4294967295"),
        Just("4294967296"),
        Just("18446744073709551615"),
        Just("18446744073709551616"),
        Just("-9223372036854775808"),
        Just("1.5"),
        Just(".inf"),
        Just(".nan"),
        Just("1e300"),
        Just("0x10"),
        Just("1G"),
        Just("1.5G"),
        Just("16M"),
        Just("20000000T"),
        Just("17179869183G"),
        Just("99999999999999999999"),
        Just("true"),
        Just("false"),
        Just("yes"),
        Just("~"),
        Just("null"),
        Just(""),
        Just("''"),
        Just("' '"),
        Just("a/b"),
        Just("../.."),
        Just("."),
        Just("control"),
        Just("/"),
        Just("/nonexistent/path"),
        Just("nbd+unix:///d?socket=/s"),
        Just("nbds://h/e"),
        Just("02:00:00:00:00:01"),
        Just("01:00:5e:00:00:01"),
        Just("[]"),
        Just("[1, 2]"),
        Just("{}"),
        Just("{a: 1}"),
        Just("!!binary aGVsbG8="),
    ]
    .prop_map(str::to_owned);
    prop_oneof![
        4 => fixed,
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => (any::<u32>(), prop_oneof![Just("K"), Just("M"), Just("G"), Just("T"), Just("KiB"), Just("P")])
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        1 => (1usize..400).prop_map(|n| "a".repeat(n)),
        1 => (0usize..300, any::<char>()).prop_map(|(n, c)| quoted(&format!("{}{c}", "x".repeat(n)))),
        1 => any::<String>().prop_map(|text| quoted(&text)),
    ]
}

/// Any line of text a hand-edited file might hold: keys known and unknown, indented or
/// not, values of any kind, comments, flow and block markers, bad YAML.
pub fn line(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => proptest::sample::select(keys).prop_map(str::to_owned),
        1 => "[a-z-]{1,12}",
    ];
    prop_oneof![
        6 => (key, value()).prop_map(|(key, value)| format!("{key}: {value}")),
        1 => ("[ \t]{1,4}", proptest::sample::select(keys), value())
            .prop_map(|(indent, key, value)| format!("{indent}{key}: {value}")),
        1 => Just("# comment".to_owned()),
        1 => Just("- item".to_owned()),
        1 => Just("---".to_owned()),
        1 => Just("&anchor".to_owned()),
        1 => Just("*alias".to_owned()),
        1 => Just("key: [unclosed".to_owned()),
        // A tag names an enum variant to serde_yaml: its error has neither key nor line.
        1 => (proptest::sample::select(keys), "![a-z]{1,8}").prop_map(|(key, tag)| format!("{key}: {tag} 1")),
        1 => Just("\t".to_owned()),
        1 => ".{0,40}",
    ]
}

/// The file of `loader`'s base keys with `key: value` in place of the base's `key` (or
/// after the base). Returns the text and the line `key` is on.
pub fn file_with(loader: &Loader, key: &str, value: &str) -> (String, usize) {
    let mut lines: Vec<String> = Vec::new();
    let mut at = None;
    for (base_key, base_value) in &loader.base {
        if *base_key == key {
            at = Some(lines.len() + 1);
            lines.push(format!("{key}: {value}"));
        } else {
            lines.push(format!("{base_key}: {base_value}"));
        }
    }
    let at = at.unwrap_or_else(|| {
        lines.push(format!("{key}: {value}"));
        lines.len()
    });
    (lines.join("\n") + "\n", at)
}

/// Checks the outcome of a file where only `key` (on line `line`) may be wrong: an error
/// names `key` (or, for a switch, the key it made necessary), and when it blames `key`
/// or is the parser's, the line of `key`.
pub fn check_key_error(loader: &Loader, key: &str, line: usize, text: &str) {
    let Err(error) = (loader.resolve)(text) else {
        return;
    };
    let message = error.to_string();
    let context = format!("{key} in\n{text}\ngave: {message}");
    let switch = loader.switches.contains(&key);
    match &error {
        ConfigError::Read { .. } => panic!("the text was given, not read: {context}"),
        ConfigError::Syntax { .. } => {
            assert!(message.starts_with(&format!("{FILE}: ")), "{context}");
            assert!(message.contains(key), "the key is not named: {context}");
            assert!(
                message.contains(&format!("line {line} ")),
                "the line is not named: {context}"
            );
        }
        ConfigError::Missing { .. } => {
            assert!(
                message.contains(key) || switch,
                "the key is not named: {context}"
            );
        }
        ConfigError::Invalid {
            key: invalid,
            origin,
            ..
        } => {
            // Another key may be blamed when the two conflict, but this one is named.
            assert!(
                message.contains(key) || switch,
                "the key is not named: {context}"
            );
            assert!(message.contains(invalid), "{context}");
            if *invalid == key {
                assert_eq!(
                    origin,
                    &Origin::File {
                        path: FILE.into(),
                        position: origin_position(origin),
                    },
                    "{context}"
                );
                assert!(
                    message.contains(&format!("at line {line} column ")),
                    "the line is not named: {context}"
                );
            }
        }
    }
}

fn origin_position(origin: &Origin) -> Option<(usize, usize)> {
    match origin {
        Origin::File { position, .. } => *position,
        _ => None,
    }
}

/// Checks the outcome of arbitrary text: no panic (the caller's), and an error that
/// names the file when it is about the file's text.
pub fn check_text(loader: &Loader, text: &str) {
    if let Err(error) = (loader.resolve)(text) {
        let message = error.to_string();
        assert!(!message.is_empty());
        if let ConfigError::Syntax { .. } = error {
            assert!(message.starts_with(&format!("{FILE}: ")), "{message}");
        }
    }
}

/// The property tests every loader has, as `#[test]` functions where it is invoked:
/// `config_properties!(loader, KEYS)`, with `loader` a `fn() -> Loader` and `KEYS` the
/// loader's keys; the invoking crate has `proptest` among its dev-dependencies.
#[macro_export]
macro_rules! config_properties {
    ($loader:path, $keys:path) => {
        ::proptest::proptest! {
            #![proptest_config(::proptest::prelude::ProptestConfig::with_cases(512))]

            #[test]
            fn any_value_of_any_key_is_accepted_or_named(
                key in ::proptest::sample::select(&$keys[..]),
                value in $crate::config_props::value(),
            ) {
                let loader = $loader();
                let (text, at) = $crate::config_props::file_with(&loader, key, &value);
                $crate::config_props::check_key_error(&loader, key, at, &text);
            }

            #[test]
            fn arbitrary_text_never_panics(
                lines in ::proptest::collection::vec($crate::config_props::line(&$keys), 0..8),
            ) {
                $crate::config_props::check_text(&$loader(), &lines.join("\n"));
            }

            #[test]
            fn arbitrary_bytes_never_panic(
                bytes in ::proptest::collection::vec(::proptest::prelude::any::<u8>(), 0..200),
            ) {
                $crate::config_props::check_text(&$loader(), &String::from_utf8_lossy(&bytes));
            }
        }
    };
}
pub use crate::config_properties;
