//! The recent rate of a run's progress, for an ETA that follows its current speed: the progress reports of the
//! last [`WINDOW`], oldest to newest.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the rate looks.
const WINDOW: Duration = Duration::from_secs(30);

/// The shortest span a rate is computed over (shorter ones are noise).
const MIN_SPAN: Duration = Duration::from_secs(1);

/// Progress reports `(when, done)` of the last [`WINDOW`].
#[derive(Default)]
pub(super) struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Adds a report; the rate over the window, units per hour, once it spans at least [`MIN_SPAN`].
    pub(super) fn sample(&mut self, at: Instant, done: u64) -> Option<i64> {
        // Progress that went backwards (a new pass) starts a new window.
        if self.samples.back().is_some_and(|(_, d)| *d > done) {
            self.samples.clear();
        }
        self.samples.push_back((at, done));
        // Keep the newest sample older than the window: the rate then spans the whole window.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| at.duration_since(*t) >= WINDOW)
        {
            self.samples.pop_front();
        }
        let (first_at, first_done) = *self.samples.front()?;
        let span = at.duration_since(first_at);
        if span < MIN_SPAN {
            return None;
        }
        let per_hour = (done - first_done) as f64 * 3_600_000.0 / span.as_millis() as f64;
        Some(per_hour.round() as i64)
    }

    /// Forgets the reports: a run that was held back (paused, throttled) measures its rate afresh.
    pub(super) fn restart(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_follows_the_last_thirty_seconds() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        let s = |n: u64| t0 + Duration::from_secs(n);
        assert_eq!(w.sample(s(0), 0), None, "one sample has no rate");
        // 10 a second for a minute…
        for i in 1..=60 {
            w.sample(s(i), i * 10);
        }
        assert_eq!(w.sample(s(61), 610), Some(36_000));
        // …then 1 a second: after 30 s the rate is the new one alone, not the average since the start.
        let mut last = None;
        for i in 1..=30 {
            last = w.sample(s(61 + i), 610 + i);
        }
        assert_eq!(last, Some(3_600));
        w.restart();
        assert_eq!(w.sample(s(100), 700), None);
    }

    #[test]
    fn progress_that_goes_back_starts_afresh() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        w.sample(t0, 100);
        assert_eq!(w.sample(t0 + Duration::from_secs(2), 10), None);
        assert_eq!(w.sample(t0 + Duration::from_secs(4), 20), Some(18_000));
    }
}
