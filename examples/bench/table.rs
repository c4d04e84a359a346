//! The printed table: one row per figure, echoed to stderr as it is measured.

pub(crate) struct Row {
    pub(crate) row: &'static str,
    pub(crate) figure: String,
    pub(crate) ours: String,
    pub(crate) baseline: String,
    pub(crate) ratio: String,
    pub(crate) goal: String,
    pub(crate) met: &'static str,
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "not met"
    }
}

pub(crate) struct Table(pub(crate) Vec<Row>);

impl Table {
    pub(crate) fn push(&mut self, row: Row) {
        eprintln!(
            "  {} | {} | {} | {} | {} | {}",
            row.figure, row.ours, row.baseline, row.ratio, row.goal, row.met
        );
        self.0.push(row);
    }

    pub(crate) fn skip(&mut self, row: &'static str, figure: &str, why: &str) {
        self.push(Row {
            row,
            figure: figure.to_owned(),
            ours: format!("skipped: {why}"),
            baseline: String::new(),
            ratio: String::new(),
            goal: String::new(),
            met: "",
        });
    }

    pub(crate) fn print(&self) {
        println!("| # | figure | sequencer | baseline (same run) | ratio | goal | |");
        println!("|---|---|---|---|---|---|---|");
        for r in &self.0 {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.row, r.figure, r.ours, r.baseline, r.ratio, r.goal, r.met
            );
        }
    }
}

/// How many times a timed figure is measured: "met" is judged on the median, printed with the spread.
pub(crate) const REPS: usize = 3;

/// Repetitions of a figure that takes a second or less (row 1 on SQLite, row 3): more pairs, so that a median
/// of ratios holds while other builds load the machine.
pub(crate) const REPS_CHEAP: usize = 9;

/// Repeated measurements of one figure.
#[derive(Default)]
pub(crate) struct Samples(Vec<f64>);

impl Samples {
    pub(crate) fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    /// The measurements, in the order taken.
    pub(crate) fn values(&self) -> &[f64] {
        &self.0
    }

    /// The median (the lower middle one of an even count).
    pub(crate) fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// Each measurement over the baseline's of the same turn: under a load that comes and goes, a pair measured
    /// back to back shares it, so the median of these ratios moves less than the ratio of the two medians.
    pub(crate) fn paired_ratios(&self, base: &Samples) -> Samples {
        Samples(self.0.iter().zip(&base.0).map(|(o, b)| o / b).collect())
    }

    /// `median (min–max over n pairs)`: a ratio judged on its median, with its spread.
    pub(crate) fn show_ratio(&self) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{:.2} ({min:.2}–{max:.2} over {} pairs)",
            self.median(),
            self.0.len()
        )
    }

    /// `median unit (min–max, n = 3)`, each with `decimals`.
    pub(crate) fn show(&self, decimals: usize, unit: &str) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{:.d$} {unit} ({min:.d$}–{max:.d$}, n = {})",
            self.median(),
            self.0.len(),
            d = decimals
        )
    }
}
