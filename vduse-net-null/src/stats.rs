//! The counters for machines (one JSON object per line on stdout) and for people (the
//! text of a live line on stderr, `vduse_kit::live`, only when it is a terminal).

use std::time::Duration;

use serde::Serialize;

use crate::backend::{Mode, RxStats, Stats, TxStats};

/// The JSON object of one report; its fields are documented in the man page.
#[derive(Debug, Serialize)]
struct Report<'a> {
    device: &'a str,
    /// What made the report: `signal` (SIGUSR1), `interval`, `exit`.
    event: &'a str,
    mode: &'a str,
    link: &'a str,
    uptime_s: f64,
    tx: TxStats,
    rx: RxStats,
}

/// One line of JSON (without the newline) with the counters of `device`.
pub fn json_line(
    device: &str,
    event: &str,
    mode: Mode,
    link_up: bool,
    uptime: Duration,
    stats: &Stats,
) -> String {
    let report = Report {
        device,
        event,
        mode: mode.name(),
        link: if link_up { "up" } else { "down" },
        uptime_s: (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
        tx: stats.tx,
        rx: stats.rx,
    };
    serde_json::to_string(&report).expect("a report serializes")
}

/// The live line's text: the link state and the counters.
pub fn summary(stats: &Stats, link_up: bool) -> String {
    format!(
        "link {} | tx {} frames, {} | rx {} frames, {} | dropped {} | errors {}",
        if link_up { "up" } else { "down" },
        stats.tx.frames,
        indicatif::HumanBytes(stats.tx.bytes),
        stats.rx.frames,
        indicatif::HumanBytes(stats.rx.bytes),
        stats.rx.dropped,
        stats.tx.errors + stats.rx.errors,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_one_line_of_json_with_every_counter() {
        let stats = Stats {
            tx: TxStats {
                frames: 3,
                bytes: 180,
                errors: 1,
            },
            rx: RxStats {
                frames: 2,
                bytes: 120,
                dropped: 1,
                errors: 0,
            },
        };
        let line = json_line(
            "null0",
            "signal",
            Mode::Echo,
            true,
            Duration::from_millis(1500),
            &stats,
        );
        assert!(!line.contains('\n'));
        assert_eq!(
            line,
            r#"{"device":"null0","event":"signal","mode":"echo","link":"up","uptime_s":1.5,"tx":{"frames":3,"bytes":180,"errors":1},"rx":{"frames":2,"bytes":120,"dropped":1,"errors":0}}"#
        );
        assert_eq!(
            summary(&stats, false),
            "link down | tx 3 frames, 180 B | rx 2 frames, 120 B | dropped 1 | errors 1"
        );
    }
}
