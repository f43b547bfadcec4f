//! `guest-echo [--ids] ARGS...`: prints ARGS joined by spaces; with `--ids`, a second
//! line `uid=U gid=G` (real ids, from /proc/self/status). A small workspace binary with
//! which the harness checks that binaries run in the guest, also as other users.

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ids = args.first().is_some_and(|a| a == "--ids");
    if ids {
        args.remove(0);
    }
    println!("{}", args.join(" "));
    if ids {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        // "Uid:\treal\teffective\tsaved\tfs"
        let real = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_string()
        };
        println!("uid={} gid={}", real("Uid:"), real("Gid:"));
    }
}
