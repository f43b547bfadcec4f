//! `vduse-net-null`: a null virtio-net device over VDUSE.

fn main() -> std::process::ExitCode {
    vduse_net_null::main_with_args(std::env::args_os())
}
