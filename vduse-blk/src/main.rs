//! `vduse-blk`: serve a file or block device as a virtio-blk disk over VDUSE.

fn main() -> std::process::ExitCode {
    vduse_blk::main_with_args(std::env::args_os())
}
