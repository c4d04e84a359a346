//! The dependency graph of a registry, analysed and drawn: waves, the critical path, and renderings as text,
//! Graphviz DOT or Mermaid.
//!
//! [`analyze`] weighs every operation by its last known duration (or 1 when none is known) and finds, in
//! O(V + E) over the plan's topological order, each operation's earliest start and the heaviest path through
//! the graph: the critical path, which no amount of parallelism can shorten. [`render`] draws the graph with
//! each operation's ledger status.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::str::FromStr;

use crate::ledger::runs::Status;
use crate::registry::{Registry, RegistryError};

/// How [`render`] draws the graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GraphFormat {
    /// Plain text: one block per wave, then the critical path.
    #[default]
    Text,
    /// A Graphviz `digraph` (`dot -Tsvg`).
    Dot,
    /// A Mermaid `flowchart`, for Markdown that renders Mermaid.
    Mermaid,
}

impl GraphFormat {
    /// Every format, in the order listed in error messages.
    pub const ALL: [GraphFormat; 3] = [GraphFormat::Text, GraphFormat::Dot, GraphFormat::Mermaid];

    /// The name [`FromStr`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphFormat::Text => "text",
            GraphFormat::Dot => "dot",
            GraphFormat::Mermaid => "mermaid",
        }
    }
}

impl fmt::Display for GraphFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`GraphFormat`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown graph format `{0}`: expected one of text, dot, mermaid")]
pub struct UnknownGraphFormat(pub String);

impl FromStr for GraphFormat {
    type Err = UnknownGraphFormat;

    /// Parses `text`, `dot` or `mermaid`, ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        GraphFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownGraphFormat(s.to_owned()))
    }
}

/// The analysed dependency graph of a registry. Every index refers to [`Registry::operations`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphView {
    /// Execution order (a topological order of the graph), of the analysed operations.
    pub order: Vec<usize>,
    /// For each operation, its dependencies.
    pub deps: Vec<Vec<usize>>,
    /// Operations grouped by wave, each wave in execution order: wave 0 has no dependencies, wave `n + 1`
    /// depends on wave `n` at the deepest.
    pub waves: Vec<Vec<usize>>,
    /// For each operation, its weight: its duration in milliseconds, or 1 when unknown.
    pub weights: Vec<u64>,
    /// How many operations have a known duration.
    pub durations_known: usize,
    /// For each operation, its earliest start with unbounded parallelism: the weight of the heaviest chain of
    /// dependencies before it.
    pub earliest_start: Vec<u64>,
    /// The heaviest path through the graph, first operation first; empty for an empty registry.
    pub critical_path: Vec<usize>,
    /// The critical path's total weight: the shortest possible run with unbounded parallelism.
    pub critical_weight: u64,
    /// The sum of all weights: the run time with no parallelism at all.
    pub total_work: u64,
}

impl GraphView {
    /// Whether every analysed operation's duration is known, so that weights are milliseconds. An empty graph
    /// counts as known.
    pub fn all_durations_known(&self) -> bool {
        self.durations_known == self.order.len()
    }

    /// The parallelism the graph allows: total work over critical-path weight (1.0 for an empty graph).
    pub fn parallelism(&self) -> f64 {
        if self.critical_weight == 0 {
            1.0
        } else {
            self.total_work as f64 / self.critical_weight as f64
        }
    }

    /// Whether `op` is on the critical path.
    pub fn is_critical(&self, op: usize) -> bool {
        self.critical_path.contains(&op)
    }

    /// The critical path's edges, each `(dependency, dependent)`.
    fn critical_edges(&self) -> HashSet<(usize, usize)> {
        self.critical_path
            .windows(2)
            .map(|w| (w[0], w[1]))
            .collect()
    }
}

/// Analyses a registry's dependency graph. `durations` maps ledger names to durations in milliseconds; an
/// operation without one weighs 1.
///
/// Fails only when the registry is invalid (see [`Registry::plan`]).
pub fn analyze(
    registry: &Registry,
    durations: &HashMap<String, u64>,
) -> Result<GraphView, RegistryError> {
    analyze_among(registry, durations, |_| true)
}

/// [`analyze`] over the operations `keep` accepts (indices into [`Registry::operations`]), as if the others had
/// already run: they are left out of the order, the waves and the critical path, weigh 0, and dependencies on
/// them are met. `process --dry-run` draws what would run with it.
///
/// Fails only when the registry is invalid (see [`Registry::plan`]).
pub fn analyze_among(
    registry: &Registry,
    durations: &HashMap<String, u64>,
    keep: impl Fn(usize) -> bool,
) -> Result<GraphView, RegistryError> {
    let plan = registry.shared_plan()?;
    let ops = registry.operations();
    let n = ops.len();
    let kept: Vec<bool> = (0..n).map(&keep).collect();
    let order: Vec<usize> = plan.order.iter().copied().filter(|&i| kept[i]).collect();
    let deps: Vec<Vec<usize>> = plan
        .deps
        .iter()
        .enumerate()
        .map(|(i, ds)| {
            if kept[i] {
                ds.iter().copied().filter(|&d| kept[d]).collect()
            } else {
                Vec::new()
            }
        })
        .collect();

    let mut durations_known = 0;
    let weights: Vec<u64> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| match (kept[i], durations.get(op.meta.name)) {
            (false, _) => 0,
            (true, Some(&ms)) => {
                durations_known += 1;
                ms
            }
            (true, None) => 1,
        })
        .collect();

    // Longest path in a DAG: relax each operation's dependencies in topological order.
    let mut earliest_start = vec![0u64; n];
    let mut finish = vec![0u64; n];
    let mut via: Vec<Option<usize>> = vec![None; n];
    let mut level = vec![0usize; n];
    for &i in &order {
        for &d in &deps[i] {
            if via[i].is_none() || finish[d] > earliest_start[i] {
                earliest_start[i] = finish[d];
                via[i] = Some(d);
            }
            level[i] = level[i].max(level[d] + 1);
        }
        finish[i] = earliest_start[i].saturating_add(weights[i]);
    }

    let mut end: Option<usize> = None;
    for &i in &order {
        if end.is_none_or(|e| finish[i] > finish[e]) {
            end = Some(i);
        }
    }
    let mut critical_path = Vec::new();
    let mut at = end;
    while let Some(i) = at {
        critical_path.push(i);
        at = via[i];
    }
    critical_path.reverse();

    let mut waves: Vec<Vec<usize>> = Vec::new();
    for &i in &order {
        if waves.len() <= level[i] {
            waves.resize_with(level[i] + 1, Vec::new);
        }
        waves[level[i]].push(i);
    }

    Ok(GraphView {
        waves,
        critical_weight: end.map_or(0, |e| finish[e]),
        total_work: weights.iter().fold(0u64, |a, &w| a.saturating_add(w)),
        order,
        deps,
        weights,
        durations_known,
        earliest_start,
        critical_path,
    })
}

/// Draws a registry's dependency graph with each operation's status (absent from `statuses`: pending) and
/// its critical path, weighed with `durations` as [`analyze`] does.
///
/// Fails only when the registry is invalid (see [`Registry::plan`]).
pub fn render(
    registry: &Registry,
    statuses: &HashMap<String, Status>,
    durations: &HashMap<String, u64>,
    format: GraphFormat,
) -> Result<String, RegistryError> {
    let view = analyze(registry, durations)?;
    let graph = Drawing {
        names: registry.operations().iter().map(|o| o.meta.name).collect(),
        statuses: registry
            .operations()
            .iter()
            .map(|o| {
                statuses
                    .get(o.meta.name)
                    .copied()
                    .unwrap_or(Status::Pending)
            })
            .collect(),
        view,
    };
    let mut out = String::new();
    // Writing to a `String` never fails.
    let _ = match format {
        GraphFormat::Text => graph.text(&mut out),
        GraphFormat::Dot => graph.dot(&mut out),
        GraphFormat::Mermaid => graph.mermaid(&mut out),
    };
    Ok(out)
}

/// What the renderers draw from.
struct Drawing {
    names: Vec<&'static str>,
    statuses: Vec<Status>,
    view: GraphView,
}

impl Drawing {
    fn text(&self, out: &mut String) -> fmt::Result {
        let v = &self.view;
        let weight = if v.all_durations_known() && !v.weights.is_empty() {
            format!("{} ms", v.critical_weight)
        } else {
            format!("weight {}", v.critical_weight)
        };
        writeln!(
            out,
            "{} operation{}, {} wave{}, critical path {} op{} ({weight})",
            v.order.len(),
            plural(v.order.len()),
            v.waves.len(),
            plural(v.waves.len()),
            v.critical_path.len(),
            plural(v.critical_path.len()),
        )?;
        for (w, wave) in v.waves.iter().enumerate() {
            writeln!(out, "wave {w}:")?;
            for &i in wave {
                write!(out, "  [{}] {}", self.statuses[i], self.names[i])?;
                if v.is_critical(i) {
                    out.push_str(" *");
                }
                if !v.deps[i].is_empty() {
                    let after: Vec<&str> = v.deps[i].iter().map(|&d| self.names[d]).collect();
                    write!(out, "  (after {})", after.join(", "))?;
                }
                out.push('\n');
            }
        }
        let path: Vec<&str> = v.critical_path.iter().map(|&i| self.names[i]).collect();
        if path.is_empty() {
            writeln!(out, "critical path: (none)")
        } else {
            writeln!(out, "critical path: {}", path.join(" → "))
        }
    }

    fn dot(&self, out: &mut String) -> fmt::Result {
        let v = &self.view;
        let critical = v.critical_edges();
        writeln!(out, "digraph operations {{")?;
        writeln!(out, "  rankdir=LR;")?;
        writeln!(out, "  node [shape=box, style=filled];")?;
        for &i in &v.order {
            let name = dot_escape(self.names[i]);
            let status = self.statuses[i];
            writeln!(
                out,
                "  \"{name}\" [label=\"{name}\\n{status}\", fillcolor={}];",
                dot_color(status)
            )?;
        }
        for &i in &v.order {
            for &d in &v.deps[i] {
                write!(
                    out,
                    "  \"{}\" -> \"{}\"",
                    dot_escape(self.names[d]),
                    dot_escape(self.names[i])
                )?;
                if critical.contains(&(d, i)) {
                    out.push_str(" [style=bold, penwidth=2]");
                }
                out.push_str(";\n");
            }
        }
        for wave in &v.waves {
            out.push_str("  { rank=same;");
            for &i in wave {
                write!(out, " \"{}\";", dot_escape(self.names[i]))?;
            }
            out.push_str(" }\n");
        }
        writeln!(out, "}}")
    }

    fn mermaid(&self, out: &mut String) -> fmt::Result {
        let v = &self.view;
        let critical = v.critical_edges();
        writeln!(out, "flowchart LR")?;
        for &i in &v.order {
            writeln!(
                out,
                "  op{i}[\"{}<br/>{}\"]",
                mermaid_escape(self.names[i]),
                self.statuses[i]
            )?;
        }
        for &i in &v.order {
            for &d in &v.deps[i] {
                let arrow = if critical.contains(&(d, i)) {
                    "==>"
                } else {
                    "-->"
                };
                writeln!(out, "  op{d} {arrow} op{i}")?;
            }
        }
        for &status in Status::ALL {
            let members: Vec<String> = v
                .order
                .iter()
                .filter(|&&i| self.statuses[i] == status)
                .map(|i| format!("op{i}"))
                .collect();
            if members.is_empty() {
                continue;
            }
            writeln!(
                out,
                "  classDef {status} fill:{},stroke:#333,color:#000;",
                mermaid_color(status)
            )?;
            writeln!(out, "  class {} {status};", members.join(","))?;
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn dot_color(status: Status) -> &'static str {
    match status {
        Status::Completed => "green",
        Status::Failed | Status::RollbackInterrupted | Status::Stale => "red",
        Status::Running | Status::RollingBack => "yellow",
        Status::Skipped => "grey",
        Status::Pending => "white",
        Status::Scheduled | Status::RolledBack | Status::Interrupted => "lightblue",
    }
}

fn mermaid_color(status: Status) -> &'static str {
    match status {
        Status::Completed => "#9f9",
        Status::Failed | Status::RollbackInterrupted | Status::Stale => "#f99",
        Status::Running | Status::RollingBack => "#ff9",
        Status::Skipped => "#ccc",
        Status::Pending => "#fff",
        Status::Scheduled | Status::RolledBack | Status::Interrupted => "#adf",
    }
}

/// Escapes a name for a DOT double-quoted string.
fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Escapes a name for a Mermaid quoted label, with Mermaid's `#…;` entity codes.
fn mermaid_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
