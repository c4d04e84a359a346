//! The dependency-graph validator: one code path for the macro at compile time and the runtime at start-up.
//!
//! [`validate`] checks a set of operations in O(V + E) (plus a heap for the timestamp order) and reports every
//! problem at once: duplicate names, unknown dependencies, self-dependencies and cycles, each cycle with its
//! whole path and the `depends_on` entry that closes it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::suggest::did_you_mean;
use crate::timestamp::Timestamp;

/// One operation as the validator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpNode<'a> {
    /// Ledger name, unique in the set.
    pub name: &'a str,
    /// Order key.
    pub timestamp: Timestamp,
    /// Ledger names of the operations this one depends on, in declaration order. Schema migrations are not
    /// part of the operation graph and are left out.
    pub depends_on: Vec<&'a str>,
}

/// A problem found in a set of operations. Indices refer to the slice given to [`validate`]; `entry` is the
/// index in that operation's `depends_on`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphError {
    /// Two operations share a ledger name.
    DuplicateName {
        /// The name.
        name: String,
        /// The operation declared first.
        first: usize,
        /// The operation declared again.
        second: usize,
    },
    /// A `depends_on` entry names no operation of the set.
    UnknownDependency {
        /// The operation with the entry.
        op: usize,
        /// The entry's index.
        entry: usize,
        /// The unknown name.
        name: String,
        /// The closest known name, if one is close.
        suggestion: Option<String>,
    },
    /// An operation depends on itself.
    SelfDependency {
        /// The operation.
        op: usize,
        /// The entry's index.
        entry: usize,
    },
    /// Operations depend on each other in a circle. `path[0]` depends on `path[1]`, …, and the last depends
    /// on `path[0]`; that last `depends_on` entry, `closing`, is the one reported.
    Cycle {
        /// The operations of the cycle, each depending on the next.
        path: Vec<usize>,
        /// `(op, entry)`: the entry that closes the cycle.
        closing: (usize, usize),
    },
}

impl GraphError {
    /// A message naming operations by their ledger names.
    pub fn message(&self, names: &dyn Fn(usize) -> String) -> String {
        match self {
            GraphError::DuplicateName { name, .. } => format!(
                "duplicate operation `{name}`: two operations have this ledger name; change the `name` or timestamp of one"
            ),
            GraphError::UnknownDependency {
                op,
                name,
                suggestion,
                ..
            } => {
                let mut msg = format!("`{}` depends on unknown operation `{name}`", names(*op));
                if let Some(s) = suggestion {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                }
                msg
            }
            GraphError::SelfDependency { op, .. } => format!("`{}` depends on itself", names(*op)),
            GraphError::Cycle { path, .. } => {
                let mut msg = String::from("dependency cycle: ");
                for &i in path.iter().chain(path.first()) {
                    if !msg.ends_with(' ') {
                        msg.push_str(" → ");
                    }
                    msg.push_str(&names(i));
                }
                msg.push_str(" (each depends on the next)");
                msg
            }
        }
    }
}

/// A validated set of operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Execution order: timestamp order (then name), moved only where a dependency demands it.
    pub order: Vec<usize>,
    /// The wave of each operation: 0 for no dependencies, else one more than its deepest dependency.
    pub level: Vec<usize>,
    /// For each operation, the indices of its (resolved) dependencies.
    pub deps: Vec<Vec<usize>>,
}

impl Plan {
    /// Operations grouped by wave, each wave in execution order.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for &i in &self.order {
            let l = self.level[i];
            if waves.len() <= l {
                waves.resize_with(l + 1, Vec::new);
            }
            waves[l].push(i);
        }
        waves
    }
}

/// Checks a set of operations and orders it. Every error is returned, not only the first.
///
/// The macros call it at compile time and `sequencer::Registry`
/// at start-up; call it yourself to check a plan built from data.
///
/// ```
/// use sequencer_core::graph::{validate, OpNode};
///
/// let ts = |s: &str| s.parse().unwrap();
/// let ops = [
///     OpNode { name: "b", timestamp: ts("2024_01_15_120000"), depends_on: vec!["a"] },
///     OpNode { name: "a", timestamp: ts("2024_01_15_120001"), depends_on: vec![] },
///     OpNode { name: "c", timestamp: ts("2024_01_15_120002"), depends_on: vec![] },
/// ];
/// let plan = validate(&ops).unwrap();
/// assert_eq!(plan.order, [1, 0, 2]); // `b` waits for `a` despite its earlier timestamp
/// assert_eq!(plan.waves(), [vec![1, 2], vec![0]]);
///
/// let cycle = [
///     OpNode { name: "a", timestamp: ts("2024_01_15_120000"), depends_on: vec!["b"] },
///     OpNode { name: "b", timestamp: ts("2024_01_15_120001"), depends_on: vec!["a"] },
/// ];
/// let errors = validate(&cycle).unwrap_err();
/// let names = |i: usize| cycle[i].name.to_owned();
/// assert_eq!(errors.len(), 1);
/// assert!(errors[0].message(&names).starts_with("dependency cycle: "), "{}", errors[0].message(&names));
/// ```
pub fn validate(ops: &[OpNode<'_>]) -> Result<Plan, Vec<GraphError>> {
    let mut errors = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        if let Some(&first) = by_name.get(op.name) {
            errors.push(GraphError::DuplicateName {
                name: op.name.to_owned(),
                first,
                second: i,
            });
        } else {
            by_name.insert(op.name, i);
        }
    }

    let mut graph: DiGraph<(), usize> = DiGraph::with_capacity(ops.len(), ops.len());
    for _ in ops {
        graph.add_node(());
    }
    let mut deps = vec![Vec::new(); ops.len()];
    for (i, op) in ops.iter().enumerate() {
        for (entry, dep) in op.depends_on.iter().enumerate() {
            match by_name.get(dep) {
                Some(&j) if j == i => errors.push(GraphError::SelfDependency { op: i, entry }),
                Some(&j) => {
                    if !deps[i].contains(&j) {
                        deps[i].push(j);
                        graph.add_edge(NodeIndex::new(i), NodeIndex::new(j), entry);
                    }
                }
                None => errors.push(GraphError::UnknownDependency {
                    op: i,
                    entry,
                    name: (*dep).to_owned(),
                    suggestion: did_you_mean(dep, ops.iter().map(|o| o.name)).map(str::to_owned),
                }),
            }
        }
    }

    for scc in petgraph::algo::tarjan_scc(&graph) {
        if scc.len() > 1 {
            errors.push(cycle_in(&graph, ops, &scc));
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(error_position);
        return Err(errors);
    }
    Ok(order(ops, deps))
}

/// Where an error points, so errors come out in source order.
fn error_position(e: &GraphError) -> (usize, usize) {
    match e {
        GraphError::DuplicateName { second, .. } => (*second, 0),
        GraphError::UnknownDependency { op, entry, .. }
        | GraphError::SelfDependency { op, entry } => (*op, *entry),
        GraphError::Cycle { closing, .. } => *closing,
    }
}

/// The shortest cycle through the latest operation of a strongly connected component. Starting at the latest
/// puts the closing edge on an operation that depends on a later one: the usual mistake.
fn cycle_in(graph: &DiGraph<(), usize>, ops: &[OpNode<'_>], scc: &[NodeIndex]) -> GraphError {
    let key = |n: &NodeIndex| (ops[n.index()].timestamp, ops[n.index()].name);
    let start = *scc.iter().max_by_key(|n| key(n)).unwrap_or(&scc[0]);
    let in_scc: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
    let mut parent: HashMap<NodeIndex, (NodeIndex, usize)> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut closing = None;
    'bfs: while let Some(n) = queue.pop_front() {
        let mut edges: Vec<_> = graph
            .edges(n)
            .map(|e| (petgraph::visit::EdgeRef::target(&e), *e.weight()))
            .collect();
        edges.sort_by_key(|&(_, entry)| entry);
        for (t, entry) in edges {
            if t == start {
                closing = Some((n, entry));
                break 'bfs;
            }
            if in_scc.contains(&t) && !parent.contains_key(&t) {
                parent.insert(t, (n, entry));
                queue.push_back(t);
            }
        }
    }
    // A strongly connected component of two or more nodes always has a cycle through each node.
    let (last, entry) = closing.unwrap_or((start, 0));
    let mut path = vec![last.index()];
    let mut n = last;
    while n != start {
        let Some(&(p, _)) = parent.get(&n) else { break };
        path.push(p.index());
        n = p;
    }
    path.reverse();
    GraphError::Cycle {
        path,
        closing: (last.index(), entry),
    }
}

/// Kahn's algorithm, always taking the earliest ready operation: timestamp order wherever dependencies allow.
fn order(ops: &[OpNode<'_>], deps: Vec<Vec<usize>>) -> Plan {
    let n = ops.len();
    let mut indegree = vec![0usize; n];
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        indegree[i] = ds.len();
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<(Timestamp, &str, usize)>> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(|i| Reverse((ops[i].timestamp, ops[i].name, i)))
        .collect();
    let mut order = Vec::with_capacity(n);
    let mut level = vec![0usize; n];
    while let Some(Reverse((_, _, i))) = ready.pop() {
        order.push(i);
        for &d in &dependents[i] {
            level[d] = level[d].max(level[i] + 1);
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse((ops[d].timestamp, ops[d].name, d)));
            }
        }
    }
    Plan { order, level, deps }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations in {} waves",
            self.order.len(),
            self.waves().len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: u64) -> Timestamp {
        Timestamp::from_version_unchecked(20240101000000 + s)
    }

    fn node<'a>(name: &'a str, t: u64, deps: &[&'a str]) -> OpNode<'a> {
        OpNode {
            name,
            timestamp: ts(t),
            depends_on: deps.to_vec(),
        }
    }

    fn names<'a>(ops: &'a [OpNode<'a>]) -> impl Fn(usize) -> String + 'a {
        move |i| ops[i].name.to_owned()
    }

    #[test]
    fn orders_by_timestamp_then_dependencies() {
        let ops = [node("c", 3, &[]), node("a", 1, &["b"]), node("b", 2, &[])];
        let plan = validate(&ops).unwrap();
        let order: Vec<_> = plan.order.iter().map(|&i| ops[i].name).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!(plan.level, [0, 1, 0]);
        assert_eq!(plan.waves(), vec![vec![2, 0], vec![1]]);
    }

    #[test]
    fn reports_the_whole_cycle_path_and_the_closing_entry() {
        let ops = [
            node("a", 1, &["c"]),
            node("b", 2, &["a"]),
            node("c", 3, &["x", "b"]),
        ];
        let errors = validate(&ops).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        let cycle = errors
            .iter()
            .find(|e| matches!(e, GraphError::Cycle { .. }))
            .unwrap();
        // Starts at the latest op, `c`; the closing entry is `a`'s dependency on the later `c`.
        assert_eq!(
            cycle,
            &GraphError::Cycle {
                path: vec![2, 1, 0],
                closing: (0, 0)
            }
        );
        assert_eq!(
            cycle.message(&names(&ops)),
            "dependency cycle: c → b → a → c (each depends on the next)"
        );
        let unknown = &errors[1];
        assert!(
            matches!(
                unknown,
                GraphError::UnknownDependency {
                    op: 2,
                    entry: 0,
                    ..
                }
            ),
            "{unknown:?}"
        );
    }

    #[test]
    fn reports_every_problem_at_once() {
        let ops = [
            node("load_users", 1, &["load_user"]),
            node("dup", 2, &["dup"]),
            node("dup", 3, &[]),
            node("x", 4, &["y"]),
            node("y", 5, &["x"]),
        ];
        let errors = validate(&ops).unwrap_err();
        assert!(errors.contains(&GraphError::UnknownDependency {
            op: 0,
            entry: 0,
            name: "load_user".into(),
            suggestion: Some("load_users".into())
        }));
        assert!(errors.contains(&GraphError::SelfDependency { op: 1, entry: 0 }));
        assert!(errors.contains(&GraphError::DuplicateName {
            name: "dup".into(),
            first: 1,
            second: 2
        }));
        assert!(errors.contains(&GraphError::Cycle {
            path: vec![4, 3],
            closing: (3, 0)
        }));
        assert_eq!(errors.len(), 4);
    }

    #[test]
    fn empty_set_is_valid() {
        assert_eq!(validate(&[]).unwrap().order, Vec::<usize>::new());
    }
}
