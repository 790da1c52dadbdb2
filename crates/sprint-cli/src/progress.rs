//! Progress bars on stderr, drawn only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `len` units of `what`; hidden when stderr is not a terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(&format!(
        "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {what} (eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// An evaluation's progress ([`sprint_eval::run::Progress`]) drawn on a bar: each stage resets
/// it to the stage's length and names the stage in the message.
pub struct EvalBar(pub ProgressBar);

impl sprint_eval::run::Progress for EvalBar {
    fn stage(&self, what: &str, len: u64) {
        self.0.reset();
        self.0.set_length(len);
        self.0.set_message(what.to_string());
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}
