//! Real-kernel test harness.
//!
//! Boots the Debian kernels that `tests/fetch-kernels` caches under QEMU (TCG, no
//! network) with a generated busybox initramfs holding the workspace's binaries, runs a
//! shell scenario in the guest and hands its recorded results back to the test.
//!
//! ```no_run
//! use vduse_tests::{Guest, Kernel, MATRIX};
//!
//! for series in MATRIX {
//!     let kernel = Kernel::load(series); // panics: "run tests/fetch-kernels"
//!     let mut guest = Guest::new(&kernel).binary("vduse-probe");
//!     if kernel.has_module("vduse") {
//!         guest = guest.modules(&["vduse", "virtio_vdpa"]);
//!     }
//!     let run = guest
//!         .script("capture probe vduse-probe\nls /dev | result devices")
//!         .run();
//!     run.assert_success("probe");
//!     println!("{}: {}", kernel.release(), run.out("probe"));
//! }
//! ```
//!
//! In the guest the scenario runs as root under busybox `sh`, with helpers:
//! `capture NAME CMD...` (stdout, stderr, exit code -> `NAME.out`, `NAME.err`,
//! `NAME.rc`), `result NAME` (stdin -> `NAME`), `spawn NAME CMD...` / `stop NAME [SIG]` /
//! `reap NAME` for background servers, `wait_for SECS CMD...`. Users: root, `tester`
//! (1000) and `nobody` (65534). Environment knobs: `VDUSE_TEST_CACHE` (kernel cache),
//! `VDUSE_TEST_KEEP=1` (keep each boot's directory: initramfs, console and results logs),
//! `VDUSE_TEST_JOBS` (guests at once per process, default 2).

mod base64;
mod guest;
mod kernel;
mod tempdir;

pub use guest::{Guest, GuestRun, workspace_binary};
pub use kernel::{Kernel, MATRIX, cache_dir};
pub use tempdir::TempDir;
