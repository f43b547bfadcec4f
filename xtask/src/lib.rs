//! Generated documentation: man pages and shell completions, built from the clap definitions
//! plus hand-written sections, checked in under `man/` and `completions/`.
//!
//! `cargo xtask gen` writes them; `cargo test -p xtask` fails when the checked-in files
//! differ from what the current definitions produce.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// One generated file: its path relative to the workspace root, and its contents.
#[derive(Debug)]
pub struct Generated {
    /// Path relative to the workspace root.
    pub path: PathBuf,
    /// File contents.
    pub contents: Vec<u8>,
}

/// The workspace version these pages describe, and the date they give for it: the third
/// field of `.TH`, which man shows at the bottom centre of every page. A release sets both
/// here, together; [`generate`] refuses a command whose version is not [`RELEASE_VERSION`],
/// so the version cannot move in `Cargo.toml` without a date. Fixed rather than taken from
/// the clock, so `cargo xtask gen` writes the same bytes on every machine and every day.
pub const RELEASE_VERSION: &str = "0.1.0";
/// The date of [`RELEASE_VERSION`] (`YYYY-MM-DD`).
pub const RELEASE_DATE: &str = "2026-12-02";

/// The manual a section belongs to (the centre of each page's top line), as man-pages(7)
/// names them.
pub fn manual_of(section: u8) -> &'static str {
    match section {
        1 => "User Commands",
        5 => "File Formats",
        8 => "System Administration",
        _ => panic!("no manual named for section {section}"),
    }
}

/// The source of every page (the bottom left of each page): the project and its version.
pub fn source() -> String {
    format!("vduse-rs {RELEASE_VERSION}")
}

/// The version a command reports, checked against [`RELEASE_VERSION`].
fn release_version_of(command: &clap::Command) -> anyhow::Result<()> {
    let version = command.get_version().unwrap_or_default();
    anyhow::ensure!(
        version == RELEASE_VERSION,
        "{} is version {version:?} but the man pages are dated for {RELEASE_VERSION}: set \
         RELEASE_VERSION and RELEASE_DATE in xtask/src/lib.rs, then run `cargo xtask gen`",
        command.get_name()
    );
    Ok(())
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .into()
}

/// Every generated file.
pub fn generate() -> anyhow::Result<Vec<Generated>> {
    let mut files = vec![Generated {
        path: "man/vduse-probe.1".into(),
        contents: man_page(vduse_probe::cli::command(), 1, PROBE_SECTIONS)?,
    }];
    files.extend(completions(vduse_probe::cli::command(), "vduse-probe"));
    files.push(Generated {
        path: "man/vduse-blk.8".into(),
        contents: man_page(vduse_blk::cli::command(), 8, BLK_SECTIONS)?,
    });
    files.extend(completions(vduse_blk::cli::command(), "vduse-blk"));
    files.push(Generated {
        path: "man/vduse-net-null.8".into(),
        contents: man_page(vduse_net_null::cli::command(), 8, NET_NULL_SECTIONS)?,
    });
    files.extend(completions(
        vduse_net_null::cli::command(),
        "vduse-net-null",
    ));
    files.push(Generated {
        path: "man/vduse-fs.8".into(),
        contents: man_page(vduse_fs::cli::command(), 8, FS_SECTIONS)?,
    });
    files.extend(completions(vduse_fs::cli::command(), "vduse-fs"));
    files.push(Generated {
        path: "man/vduse.yaml.5".into(),
        contents: yaml_page(&[
            (
                vduse_blk::cli::command(),
                &vduse_blk::config::KEYS[..],
                "blk",
            ),
            (
                vduse_net_null::cli::command(),
                &vduse_net_null::config::KEYS[..],
                "net-null",
            ),
            (vduse_fs::cli::command(), &vduse_fs::config::KEYS[..], "fs"),
        ])?
        .into_bytes(),
    });
    Ok(files)
}

/// vduse.yaml(5): the configuration files of the servers, one section per server, each
/// key described by the help of its flag of the same name.
fn yaml_page(servers: &[(clap::Command, &[&str], &str)]) -> anyhow::Result<String> {
    let escape = |text: &str| text.replace('\\', "\\e").replace('-', "\\-");
    for (command, _, _) in servers {
        release_version_of(command)?;
    }
    let mut out = format!(
        ".TH vduse.yaml 5 \"{RELEASE_DATE}\" \"{}\" \"{}\"\n{YAML_HEAD}",
        source(),
        manual_of(5)
    );
    for (command, keys, dir) in servers {
        let name = command.get_name();
        out.push_str(&format!(
            ".SH \"{}\"\nRead by \\fB{}\\fR(8) from \\fB\\-\\-config\\fR \
             (under systemd: \\fB/etc/vduse/{}/\\fR\\fINAME\\fR\\fB.yaml\\fR).\n",
            escape(&name.to_uppercase()),
            escape(name),
            escape(dir)
        ));
        for key in keys.iter() {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_long() == Some(*key))
                .ok_or_else(|| anyhow::anyhow!("{name}: key {key} has no flag --{key}"))?;
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|help| help.to_string())
                .unwrap_or_default();
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|value| !value.is_hide_set())
                .map(|value| value.get_name().to_owned())
                .collect();
            let value = match values.as_slice() {
                [] => arg
                    .get_value_names()
                    .map_or("BOOL".to_owned(), |names| names[0].to_string()),
                values => values.join(" | "),
            };
            out.push_str(&format!(
                ".TP\n\\fB{}\\fR: \\fI{}\\fR\n{}\n",
                escape(key),
                escape(&value),
                escape(&help)
            ));
        }
    }
    out.push_str(YAML_TAIL);
    Ok(out)
}

/// The hand-written beginning of vduse.yaml(5).
const YAML_HEAD: &str = include_str!("../man-sections/vduse.yaml.5.head.roff");
/// The hand-written end of vduse.yaml(5).
const YAML_TAIL: &str = include_str!("../man-sections/vduse.yaml.5.tail.roff");

fn completions(mut command: clap::Command, name: &str) -> Vec<Generated> {
    [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ]
    .into_iter()
    .map(|(shell, file)| {
        let mut contents = Vec::new();
        clap_complete::generate(shell, &mut command, name, &mut contents);
        Generated {
            path: Path::new("completions").join(file),
            contents,
        }
    })
    .collect()
}

/// A man page: clap's title, name, synopsis, description and options, then `extra` (roff).
fn man_page(command: clap::Command, section: u8, extra: &str) -> anyhow::Result<Vec<u8>> {
    release_version_of(&command)?;
    let man_command = command.clone();
    let man = clap_mangen::Man::new(command)
        .section(section.to_string())
        .date(RELEASE_DATE)
        .source(source())
        .manual(manual_of(section));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(commands_section(&man_command).as_bytes());
    out.extend_from_slice(extra.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// A COMMANDS section listing each subcommand with its arguments and their possible values
/// (clap_mangen would refer to one man page per subcommand instead).
fn commands_section(command: &clap::Command) -> String {
    let escape = |text: &str| text.replace('\\', "\\e").replace('-', "\\-");
    let mut out = String::new();
    let subcommands: Vec<_> = command.get_subcommands().collect();
    if subcommands.is_empty() {
        return out;
    }
    out.push_str(".SH COMMANDS\n");
    for sub in subcommands {
        let args: Vec<_> = sub.get_positionals().collect();
        let names: Vec<String> = args
            .iter()
            .map(|a| {
                format!(
                    " \\fI{}\\fR",
                    a.get_value_names()
                        .map_or("ARG".into(), |n| n[0].to_string())
                )
            })
            .collect();
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR{}\n",
            escape(sub.get_name()),
            names.concat()
        ));
        if let Some(about) = sub.get_about() {
            out.push_str(&format!("{}\n", escape(&about.to_string())));
        }
        for arg in args {
            for value in arg.get_possible_values() {
                let help = value
                    .get_help()
                    .map(|h| escape(&h.to_string()))
                    .unwrap_or_default();
                out.push_str(&format!(
                    ".RS\n.TP\n\\fB{}\\fR\n{help}\n.RE\n",
                    escape(value.get_name())
                ));
            }
        }
    }
    out
}

/// The hand-written sections of vduse-probe(1).
const PROBE_SECTIONS: &str = include_str!("../man-sections/vduse-probe.1.roff");

/// The hand-written sections of vduse-net-null(8).
const NET_NULL_SECTIONS: &str = include_str!("../man-sections/vduse-net-null.8.roff");

/// The hand-written sections of vduse-fs(8).
const FS_SECTIONS: &str = include_str!("../man-sections/vduse-fs.8.roff");

/// The hand-written sections of vduse-blk(8).
const BLK_SECTIONS: &str = include_str!("../man-sections/vduse-blk.8.roff");
