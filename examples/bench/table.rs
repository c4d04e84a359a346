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
