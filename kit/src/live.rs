//! [`LiveLine`]: one line on stderr that a server redraws with its counters while a person
//! watches; nothing at all when stderr is not a terminal (scripts, systemd), where the
//! counters go to stdout as JSON instead.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A line `DEVICE: MESSAGE` on stderr, redrawn at most four times a second; hidden when
/// stderr is not a terminal.
#[derive(Debug)]
pub struct LiveLine {
    bar: ProgressBar,
}

impl LiveLine {
    /// The line of `device`.
    pub fn new(device: &str) -> LiveLine {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{prefix}: {msg}").expect("the template is valid"),
        );
        bar.set_prefix(device.to_owned());
        LiveLine { bar }
    }

    /// Shows `message` (made only when the line is drawn).
    pub fn show(&self, message: impl FnOnce() -> String) {
        if !self.bar.is_hidden() {
            self.bar.set_message(message());
        }
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
    fn the_line_is_drawn_only_on_a_terminal() {
        use std::io::IsTerminal;
        let live = LiveLine::new("d0");
        assert_eq!(live.is_hidden(), !std::io::stderr().is_terminal());
        let mut made = false;
        live.show(|| {
            made = true;
            String::new()
        });
        assert_eq!(made, !live.is_hidden());
        live.finish();
    }
}
