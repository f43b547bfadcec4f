//! The Debian kernels `tests/fetch-kernels` caches, as the harness sees them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The kernel series every real-kernel test covers, oldest first.
///
/// 6.1 (bookworm) has no VDUSE at all; 6.12, 7.2 and 7.3 have the `vduse` module with
/// different API versions and features (docs/kernel-facts.md, section 1).
pub const MATRIX: [&str; 4] = ["6.1", "6.12", "7.2", "7.3"];

/// The cache `tests/fetch-kernels` fills:
/// `$VDUSE_TEST_CACHE`, else `$XDG_CACHE_HOME/vduse-rs`, else `$HOME/.cache/vduse-rs`.
pub fn cache_dir() -> PathBuf {
    let nonempty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = nonempty("VDUSE_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    let base = nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home =
                nonempty("HOME").expect("neither VDUSE_TEST_CACHE, XDG_CACHE_HOME nor HOME set");
            PathBuf::from(home).join(".cache")
        });
    base.join("vduse-rs")
}

/// One cached kernel: its image, release string and trimmed module tree.
#[derive(Debug, Clone)]
pub struct Kernel {
    series: String,
    dir: PathBuf,
    release: String,
    version: String,
    /// Loadable module name -> the modules it depends on (from the cache's `deps` file).
    deps: BTreeMap<String, Vec<String>>,
    /// Names of the modules built into the image (from `modules.builtin`).
    builtin: BTreeSet<String>,
}

impl Kernel {
    /// Loads the cached kernel of `series` (e.g. `"7.3"`).
    ///
    /// # Panics
    /// When the cache has no complete entry for it: tests must fail, not skip, so the
    /// message says to run `tests/fetch-kernels`.
    pub fn load(series: &str) -> Kernel {
        let dir = cache_dir().join("kernels").join(series);
        let read = |name: &str| -> String {
            match fs::read_to_string(dir.join(name)) {
                Ok(s) => s.trim().to_string(),
                Err(e) => panic!(
                    "kernel {series} is not cached ({}: {e}): run `tests/fetch-kernels {series}` \
                     (or `tests/fetch-kernels` for the whole matrix {MATRIX:?})",
                    dir.join(name).display()
                ),
            }
        };
        // `version` is written last by fetch-kernels: its presence marks a complete entry.
        let version = read("version");
        let release = read("release");
        if !dir.join("vmlinuz").is_file() {
            panic!(
                "{}/vmlinuz missing: run `tests/fetch-kernels {series}`",
                dir.display()
            );
        }
        let deps = read("deps")
            .lines()
            .filter_map(|line| {
                let (name, deps) = line.split_once(':')?;
                Some((
                    name.trim().to_string(),
                    deps.split_whitespace().map(String::from).collect(),
                ))
            })
            .collect();
        let builtin_file = dir
            .join("lib/modules")
            .join(&release)
            .join("modules.builtin");
        let builtin = fs::read_to_string(builtin_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|path| Some(module_name(path.rsplit('/').next()?)))
            .collect();
        Kernel {
            series: series.to_string(),
            dir,
            release,
            version,
            deps,
            builtin,
        }
    }

    /// Every kernel of [`MATRIX`], oldest first (panics like [`Kernel::load`]).
    pub fn all() -> Vec<Kernel> {
        MATRIX.iter().map(|s| Kernel::load(s)).collect()
    }

    /// The series this kernel was loaded as, e.g. `"7.3"`.
    pub fn series(&self) -> &str {
        &self.series
    }

    /// What `uname -r` prints in the guest, e.g. `"7.3.4+deb13-amd64"`.
    pub fn release(&self) -> &str {
        &self.release
    }

    /// The Debian package version it came from, e.g. `"7.3.4-1~bpo13+1"`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The kernel image.
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    /// The cached `lib/modules/<release>` tree (decompressed `.ko`, `modules.dep`).
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.release)
    }

    /// The cache's `deps` file (`module: dep1 dep2` per line).
    pub fn deps_file(&self) -> PathBuf {
        self.dir.join("deps")
    }

    /// The cached kernel of `series`, which must have every one of `modules` (loadable or
    /// built in); the failure says how to refresh the cache.
    #[track_caller]
    pub fn load_with(series: &str, modules: &[&str]) -> Kernel {
        let kernel = Kernel::load(series);
        for module in modules {
            assert!(
                kernel.has_module(module),
                "kernel {series} ({}) has no module {module} in the cache: run \
                 `tests/fetch-kernels`",
                kernel.release()
            );
        }
        kernel
    }

    /// Whether the guest can use module `name` (`-` and `_` are alike): it is either in the
    /// cached module tree or built into the image.
    pub fn has_module(&self, name: &str) -> bool {
        self.is_loadable(name) || self.is_builtin(name)
    }

    /// Whether `name` is a loadable module in the cached tree.
    pub fn is_loadable(&self, name: &str) -> bool {
        self.deps.contains_key(&module_name(name))
    }

    /// Whether `name` is built into the kernel image.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name(name))
    }

    /// The direct dependencies of loadable module `name` (empty when it has none or is
    /// not loadable).
    pub fn module_deps(&self, name: &str) -> &[String] {
        self.deps
            .get(&module_name(name))
            .map_or(&[], |d| d.as_slice())
    }

    /// The configuration file shipped with the kernel, when the packages had one.
    pub fn config_file(&self) -> Option<PathBuf> {
        let path = self.dir.join(format!("config-{}", self.release));
        path.is_file().then_some(path)
    }

    /// A value of the kernel configuration: `config("CONFIG_VDPA")` is `Some("m")`,
    /// `Some("y")`, `Some("\"string\"")`..., or `None` when unset or without a config file.
    pub fn config(&self, key: &str) -> Option<String> {
        let text = fs::read_to_string(self.config_file()?).ok()?;
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    }

    /// The directory of this kernel in the cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Module name as the kernel knows it: file name without `.ko*`, `-` turned into `_`.
fn module_name(name: &str) -> String {
    let base = name.split(".ko").next().unwrap_or(name);
    base.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::module_name;

    #[test]
    fn module_names_are_normalised() {
        assert_eq!(module_name("virtio_blk.ko"), "virtio_blk");
        assert_eq!(module_name("nf-tables.ko.xz"), "nf_tables");
        assert_eq!(module_name("vduse"), "vduse");
    }
}
