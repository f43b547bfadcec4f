//! The check that a tool prefixes its error lines with a syslog priority (`<3>`) only when
//! its stderr is the journal: when `JOURNAL_STREAM` names the device and inode of the
//! very stream stderr is, as systemd sets it, and not when a child that inherited the
//! variable writes somewhere else.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Runs `binary` with `args` (which must fail with a configuration error, exit 78) with
/// its stderr in a file and `JOURNAL_STREAM` unset, naming that file, naming another file
/// and naming nothing, and checks where the first line of stderr, which starts with
/// `TOOL: error: `, carries the `<3>` prefix.
pub fn assert_priority_only_when_stderr_is_the_journal(binary: &Path, tool: &str, args: &[&str]) {
    let dir = std::env::temp_dir().join(format!(
        "vduse-journal-stream-{tool}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let stderr_path = dir.join("stderr");
    let run = |journal_stream: &dyn Fn(&std::fs::Metadata) -> Option<String>| {
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut command = Command::new(binary);
        command.args(args);
        command.env("VDUSE_LOG", "off").env_remove("JOURNAL_STREAM");
        if let Some(value) = journal_stream(&stderr.metadata().unwrap()) {
            command.env("JOURNAL_STREAM", value);
        }
        let status = command.stderr(stderr).status().unwrap();
        assert_eq!(status.code(), Some(78), "{tool} {args:?}");
        std::fs::read_to_string(&stderr_path).unwrap()
    };
    let stream_of = |metadata: &std::fs::Metadata| format!("{}:{}", metadata.dev(), metadata.ino());
    let plain_prefix = format!("{tool}: error: ");

    let plain = run(&|_| None);
    assert!(plain.starts_with(&plain_prefix), "{plain}");
    // What systemd sets: the device and inode of the stream it gave as stderr.
    let journal = run(&|stderr| Some(stream_of(stderr)));
    assert!(
        journal.starts_with(&format!("<3>{plain_prefix}")),
        "{journal}"
    );
    // A child started from a unit with its stderr redirected inherits JOURNAL_STREAM, which
    // then names another stream (here the binary's file); one that names no stream at all
    // is the same.
    let elsewhere = stream_of(&std::fs::metadata(binary).unwrap());
    for value in [elsewhere.as_str(), "8:12345", "journal"] {
        let redirected = run(&|_| Some(value.to_owned()));
        assert!(
            redirected.starts_with(&plain_prefix),
            "{value}: {redirected}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
