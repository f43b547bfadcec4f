//! `cargo xtask gen`: regenerate man pages and completions. `cargo xtask check`: fail when
//! they are out of date.

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let root = xtask::workspace_root();
    let task = std::env::args().nth(1).unwrap_or_default();
    let files = xtask::generate()?;
    match task.as_str() {
        "gen" => {
            for file in files {
                let path = root.join(&file.path);
                std::fs::create_dir_all(path.parent().expect("files live in a directory"))?;
                std::fs::write(&path, &file.contents)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", file.path.display());
            }
        }
        "check" => {
            let stale: Vec<_> = files
                .iter()
                .filter(|f| std::fs::read(root.join(&f.path)).ok().as_ref() != Some(&f.contents))
                .map(|f| f.path.display().to_string())
                .collect();
            if !stale.is_empty() {
                bail!("out of date: {}; run `cargo xtask gen`", stale.join(", "));
            }
        }
        _ => bail!("usage: cargo xtask gen | check"),
    }
    Ok(())
}
