//! Every checked-in man page renders with `groff -ww -man -Tutf8` without a single warning,
//! and its top and bottom lines show the fields of `.TH` where man puts them: the manual of
//! its section in the top centre, the source (`vduse-rs VERSION`) at the bottom left and the
//! date in the bottom centre. An empty or missing `.TH` field shifts the others silently, so
//! the layout is checked as well as groff's stderr.
//!
//! groff comes from the Debian package groff-base; without it the test fails, it does not
//! skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pages under `man/`, sorted.
fn pages() -> Vec<PathBuf> {
    let dir = xtask::workspace_root().join("man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    pages.sort();
    pages
}

/// `vduse-blk.8` -> (`vduse-blk`, 8).
fn name_and_section(page: &Path) -> (String, u8) {
    let file = page.file_name().unwrap().to_str().unwrap();
    let (name, section) = file
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("{file}: no section suffix"));
    let section = section
        .parse()
        .unwrap_or_else(|_| panic!("{file}: section {section:?} is not a number"));
    (name.to_owned(), section)
}

/// groff's plain-text rendering of `page` (no bold, underline or colour), and its stderr.
fn render(page: &Path) -> (String, String) {
    let output = Command::new("groff")
        .args(["-ww", "-man", "-Tutf8", "-P-cbu"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run groff ({e}): install the Debian package groff-base")
        });
    assert!(
        output.status.success(),
        "groff failed on {}: {}",
        page.display(),
        output.status
    );
    // groff -Tutf8 turns a plain `-` into a hyphen (U+2010) and `\-` into a minus (U+2212).
    let text = String::from_utf8(output.stdout)
        .expect("groff -Tutf8 writes UTF-8")
        .replace(['\u{2010}', '\u{2212}'], "-");
    (text, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A header or footer line split into its left, centre and right fields (separated by runs
/// of at least two spaces).
fn fields(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .collect()
}

#[test]
fn every_page_renders_without_warnings_and_with_its_title_fields_in_place() {
    let pages = pages();
    assert!(
        pages.len() >= 5,
        "expected the five pages under man/, found {pages:?}"
    );
    let mut failures = Vec::new();
    for page in &pages {
        let file = page.file_name().unwrap().to_string_lossy().into_owned();
        let (name, section) = name_and_section(page);
        let (text, stderr) = render(page);
        if !stderr.is_empty() {
            failures.push(format!("{file}: groff -ww warns:\n{stderr}"));
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let (Some(top), Some(bottom)) = (lines.first(), lines.last()) else {
            failures.push(format!("{file}: renders to nothing"));
            continue;
        };
        let title = format!("{name}({section})");
        let expected_top = [title.as_str(), xtask::manual_of(section), title.as_str()];
        if fields(top) != expected_top {
            failures.push(format!(
                "{file}: top line {top:?}, expected the fields {expected_top:?}"
            ));
        }
        let source = xtask::source();
        let expected_bottom = [source.as_str(), xtask::RELEASE_DATE, title.as_str()];
        if fields(bottom) != expected_bottom {
            failures.push(format!(
                "{file}: bottom line {bottom:?}, expected the fields {expected_bottom:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_release_date_is_a_date_and_the_release_version_the_workspace_version() {
    let date = xtask::RELEASE_DATE;
    let parts: Vec<&str> = date.split('-').collect();
    let valid = matches!(parts.as_slice(), [y, m, d]
        if y.len() == 4 && m.len() == 2 && d.len() == 2
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
            && (1..=12).contains(&m.parse::<u8>().unwrap())
            && (1..=31).contains(&d.parse::<u8>().unwrap()));
    assert!(valid, "RELEASE_DATE {date:?} is not YYYY-MM-DD");
    assert_eq!(
        xtask::RELEASE_VERSION,
        env!("CARGO_PKG_VERSION"),
        "the workspace version moved: set RELEASE_VERSION and RELEASE_DATE in \
         xtask/src/lib.rs, then run `cargo xtask gen`"
    );
}
