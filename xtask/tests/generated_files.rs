//! The checked-in man pages and completions match the current clap definitions.

#[test]
fn generated_files_are_up_to_date() {
    let root = xtask::workspace_root();
    for file in xtask::generate().unwrap() {
        let path = root.join(&file.path);
        let on_disk = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask gen`", path.display()));
        assert!(
            on_disk == file.contents,
            "{} is out of date with the clap definitions; run `cargo xtask gen`",
            file.path.display()
        );
    }
}
