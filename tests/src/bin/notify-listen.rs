//! `notify-listen SOCKET [--check PATH] [--timeout SECS]`: stands in for systemd's
//! notification socket in guests. Binds a datagram socket at SOCKET, prints each message it
//! receives, and on `READY=1` prints whether PATH exists at that moment (so a test can
//! check that readiness comes only once the device is there), then exits 0. Exits 1 when
//! no `READY=1` arrives within the timeout (default 30 s).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(socket) = args.first() else {
        eprintln!("usage: notify-listen SOCKET [--check PATH] [--timeout SECS]");
        return ExitCode::from(2);
    };
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let check = option("--check");
    let timeout = option("--timeout")
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);

    let _ = std::fs::remove_file(socket);
    let listener = match UnixDatagram::bind(socket) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("notify-listen: cannot bind {socket}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut buffer = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = listener.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let Ok(len) = listener.recv(&mut buffer) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buffer[..len]);
        println!("message: {}", message.trim_end().replace('\n', " "));
        if message.lines().any(|line| line == "READY=1") {
            if let Some(path) = check {
                println!("check: {path} exists={}", Path::new(path).exists());
            }
            return ExitCode::SUCCESS;
        }
    }
    eprintln!("notify-listen: no READY=1 within {timeout} s");
    ExitCode::FAILURE
}
