//! `vduse-probe`: report whether and how VDUSE works on this host.

fn main() -> std::process::ExitCode {
    vduse_probe::main_with_args(std::env::args_os())
}
