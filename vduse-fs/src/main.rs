//! `vduse-fs`: share a host directory as a virtio-fs device over VDUSE.

fn main() -> std::process::ExitCode {
    vduse_fs::main_with_args(std::env::args_os())
}
