//! Progress of a run: a bar on a terminal, otherwise a log line every 30 s (steps, sequences
//! per second, loss, time left), so that a run under `docker logs` or `nohup` is not silent.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a progress line is logged when there is no bar.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Reports the steps of one run.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    ticker: Ticker,
    started: Instant,
    steps: usize,
    done: usize,
}

/// Where a run stands after a step.
pub(super) struct StepReport {
    pub epoch: usize,
    pub epochs: usize,
    /// Mean loss of the epoch so far.
    pub loss: f64,
    /// Sequences per second in the epoch so far.
    pub seq_per_sec: f64,
}

impl Progress {
    /// Progress over `steps` steps: a bar when `bar` (stderr is a terminal), log lines otherwise.
    pub(super) fn new(bar: bool, steps: usize) -> Self {
        let now = Instant::now();
        let bar = bar.then(|| {
            let bar = ProgressBar::new(steps as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} {wide_bar} {pos}/{len} {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            ticker: Ticker::new(now, LOG_EVERY),
            started: now,
            steps,
            done: 0,
        }
    }

    /// Counts a step.
    pub(super) fn step(&mut self, report: &StepReport) {
        self.done += 1;
        let StepReport {
            epoch,
            epochs,
            loss,
            seq_per_sec,
        } = *report;
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "epoch {epoch} loss {loss:.4} {seq_per_sec:.0} seq/s"
            ));
            bar.inc(1);
            return;
        }
        let now = Instant::now();
        if self.ticker.due(now) {
            let left = time_left(self.done, self.steps, now - self.started);
            tracing::info!(
                step = self.done,
                steps = self.steps,
                epoch,
                epochs,
                seq_per_sec = %format!("{seq_per_sec:.0}"),
                loss = %format!("{loss:.4}"),
                eta = %clock(left),
                "training"
            );
        }
    }

    /// Clears the bar.
    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A log line every 30 s over a long scoring pass (validation of a large catalogue takes
/// minutes), whether or not a terminal shows a bar.
pub(super) struct ScoringProgress {
    ticker: Ticker,
    started: Instant,
    cases: usize,
}

impl ScoringProgress {
    /// Progress over `cases` histories to score.
    pub(super) fn new(cases: usize) -> Self {
        let now = Instant::now();
        Self {
            ticker: Ticker::new(now, LOG_EVERY),
            started: now,
            cases,
        }
    }

    /// `done` histories are scored.
    pub(super) fn scored(&mut self, done: usize) {
        let now = Instant::now();
        if done < self.cases && self.ticker.due(now) {
            let elapsed = now - self.started;
            tracing::info!(
                scored = done,
                cases = self.cases,
                per_sec = %format!("{:.0}", done as f64 / elapsed.as_secs_f64().max(1e-9)),
                eta = %clock(time_left(done, self.cases, elapsed)),
                "scoring"
            );
        }
    }
}

/// Says when a periodic line is due.
struct Ticker {
    every: Duration,
    last: Instant,
}

impl Ticker {
    fn new(start: Instant, every: Duration) -> Self {
        Self { every, last: start }
    }

    /// Whether a line is due at `now`; if so, the next is due `every` later.
    fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) < self.every {
            return false;
        }
        self.last = now;
        true
    }
}

/// The time the `total - done` steps left will take at the pace so far (validation included).
fn time_left(done: usize, total: usize, elapsed: Duration) -> Duration {
    if done == 0 {
        return Duration::ZERO;
    }
    elapsed.mul_f64(total.saturating_sub(done) as f64 / done as f64)
}

/// `h:mm:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_due_every_period_and_not_between() {
        let start = Instant::now();
        let mut ticker = Ticker::new(start, Duration::from_secs(30));
        let at = |s: u64| start + Duration::from_secs(s);
        let due: Vec<bool> = [1, 29, 30, 31, 59, 61, 200]
            .into_iter()
            .map(|s| ticker.due(at(s)))
            .collect();
        assert_eq!(due, [false, false, true, false, false, true, true]);
    }

    #[test]
    fn time_left_extrapolates_the_pace_so_far() {
        let a_minute = Duration::from_secs(60);
        assert_eq!(time_left(100, 400, a_minute), Duration::from_secs(180));
        assert_eq!(time_left(400, 400, a_minute), Duration::ZERO);
        assert_eq!(time_left(0, 400, a_minute), Duration::ZERO);
        assert_eq!(clock(Duration::from_secs(3 * 3600 + 62)), "3:01:02");
    }
}
