//! The counters for machines (one JSON object per line on stdout) and for people (a live
//! line on stderr, only when it is a terminal).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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

/// The live display: a line on stderr redrawn a few times a second; hidden when stderr is
/// not a terminal (scripts, systemd).
#[derive(Debug)]
pub struct Live {
    bar: ProgressBar,
}

impl Live {
    /// A display for `device`.
    pub fn new(device: &str) -> Live {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{prefix}: {msg}").expect("the template is valid"),
        );
        bar.set_prefix(device.to_owned());
        Live { bar }
    }

    /// Shows `stats` and the link state.
    pub fn show(&self, stats: &Stats, link_up: bool) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_message(format!(
            "link {} | tx {} frames, {} | rx {} frames, {} | dropped {} | errors {}",
            if link_up { "up" } else { "down" },
            stats.tx.frames,
            indicatif::HumanBytes(stats.tx.bytes),
            stats.rx.frames,
            indicatif::HumanBytes(stats.rx.bytes),
            stats.rx.dropped,
            stats.tx.errors + stats.rx.errors,
        ));
    }

    /// Whether nothing is drawn (stderr is not a terminal).
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Leaves the last line on the terminal.
    pub fn finish(&self) {
        self.bar.abandon();
    }
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
    }

    #[test]
    fn the_live_line_is_drawn_only_on_a_terminal() {
        use std::io::IsTerminal;
        let live = Live::new("null0");
        assert_eq!(live.is_hidden(), !std::io::stderr().is_terminal());
        live.show(&Stats::default(), true);
        live.finish();
    }
}
