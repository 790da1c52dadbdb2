//! Progress bars on stderr, drawn only when stderr is a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The one template of every bar: elapsed time, the bar's title (its prefix, see
/// [`set_title`]; none by default), the bar, units done of units, the message (what is
/// counted, or the current stage) and the ETA.
pub const TEMPLATE: &str = "{elapsed_precise} {prefix}[{bar:30}] {pos}/{len} {msg} (eta {eta})";

/// The style of every bar: [`TEMPLATE`].
pub fn style() -> ProgressStyle {
    ProgressStyle::with_template(TEMPLATE).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A bar over `len` units of `what` (its message) on stderr; hidden when stderr is not a
/// terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style());
    bar.set_message(what.to_string());
    bar
}

/// Sets the title shown before the bar (`loading minilm`, a stage name); `""` for none.
pub fn set_title(bar: &ProgressBar, title: &str) {
    if title.is_empty() {
        bar.set_prefix("");
    } else {
        bar.set_prefix(format!("{title} "));
    }
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

/// Progress for logs: when stderr is not a terminal (a file, CI), a background thread
/// writes one plain line every [`Ticker::PERIOD`] for each running stage (stages of
/// separate lanes run at the same time): the stage, how long it has run, its current step
/// with items done of items and the step's ETA. On a terminal it writes nothing (the bars
/// show the same).
pub struct Ticker {
    state: std::sync::Arc<std::sync::Mutex<Vec<TickState>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct TickState {
    /// The running stage (`[3/12] accuracy-minilm-bbc`), none between stages.
    stage: Option<(String, std::time::Instant)>,
    /// The current step of the stage: what, items, items done, started.
    step: Option<(String, u64, u64, std::time::Instant)>,
}

/// `90 s`, `2 min 05 s`.
pub fn human_seconds(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {:02} s", s / 60, s % 60)
    }
}

impl TickState {
    fn line(&self) -> Option<String> {
        let (stage, started) = self.stage.as_ref()?;
        let mut line = format!(
            "{stage}: running {}",
            human_seconds(started.elapsed().as_secs_f64())
        );
        if let Some((what, len, pos, t0)) = &self.step {
            line.push_str(&format!("; {what}"));
            if *len > 0 {
                line.push_str(&format!(" {pos}/{len}"));
                if *pos > 0 && pos < len {
                    let eta = t0.elapsed().as_secs_f64() * (len - pos) as f64 / *pos as f64;
                    line.push_str(&format!(" (eta {})", human_seconds(eta)));
                }
            }
        }
        Some(line)
    }
}

impl Ticker {
    /// Seconds between two lines.
    pub const PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

    /// A ticker writing to stderr when `enabled` (stderr is not a terminal), else inert.
    pub fn new(enabled: bool) -> Self {
        let state = std::sync::Arc::new(std::sync::Mutex::new(Vec::<TickState>::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = enabled.then(|| {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut last = std::time::Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    if last.elapsed() >= Self::PERIOD {
                        last = std::time::Instant::now();
                        let lines: Vec<String> = state
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .iter()
                            .filter_map(TickState::line)
                            .collect();
                        for l in lines {
                            eprintln!("{l}");
                        }
                    }
                }
            })
        });
        Self {
            state,
            stop,
            thread,
        }
    }

    fn with(&self, lane: usize, f: impl FnOnce(&mut TickState)) {
        let mut lanes = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if lanes.len() <= lane {
            lanes.resize_with(lane + 1, TickState::default);
        }
        f(&mut lanes[lane]);
    }

    /// A stage named `name` begins on `lane`.
    pub fn begin(&self, lane: usize, name: String) {
        self.with(lane, |s| {
            s.stage = Some((name, std::time::Instant::now()));
            s.step = None;
        });
    }

    /// The stage of `lane` ended.
    pub fn end(&self, lane: usize) {
        self.with(lane, |s| {
            s.stage = None;
            s.step = None;
        });
    }

    /// A step of `len` items of `what` begins inside the stage of `lane`.
    pub fn step(&self, lane: usize, what: &str, len: u64) {
        self.with(lane, |s| {
            s.step = Some((what.to_string(), len, 0, std::time::Instant::now()))
        });
    }

    /// `n` items of the step of `lane` are done.
    pub fn inc(&self, lane: usize, n: u64) {
        self.with(lane, |s| {
            if let Some(step) = &mut s.step {
                step.2 += n;
            }
        });
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticker_line_names_stage_step_items_and_eta() {
        let mut s = TickState::default();
        assert_eq!(s.line(), None, "no line between stages");
        let t0 = std::time::Instant::now() - std::time::Duration::from_secs(20);
        s.stage = Some(("[2/12] accuracy-minilm-bbc".into(), t0));
        s.step = Some(("sprint documents".into(), 400, 100, t0));
        let l = s.line().unwrap();
        assert!(
            l.starts_with("[2/12] accuracy-minilm-bbc: running 20 s; sprint documents 100/400 (eta 1 min 00 s)"),
            "{l}"
        );
        s.step = None;
        assert_eq!(
            s.line().unwrap(),
            "[2/12] accuracy-minilm-bbc: running 20 s"
        );
        assert_eq!(human_seconds(125.4), "2 min 05 s");
    }
}
