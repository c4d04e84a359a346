//! Property test: on thousands of random graphs the validator agrees with petgraph's toposort, every reported
//! cycle is a real cycle closed by the reported entry, and every order it returns respects every dependency.

use petgraph::graph::{DiGraph, NodeIndex};
use sequencer_core::{validate, GraphError, OpNode, Timestamp};

struct Case {
    names: Vec<String>,
    times: Vec<Timestamp>,
    deps: Vec<Vec<usize>>,
}

fn random_case(rng: &mut fastrand::Rng) -> Case {
    let n = rng.usize(1..40);
    let density = rng.f64() * 0.15;
    // Most edges point backwards (acyclic); a few point forwards and may close cycles.
    let forward = if rng.bool() { 0.0 } else { rng.f64() * 0.05 };
    let names: Vec<String> = (0..n).map(|i| format!("op_{i}")).collect();
    let times = (0..n)
        .map(|i| Timestamp::from_version_unchecked(20240101000000 + (rng.u64(0..3) + i as u64 * 3)))
        .collect();
    let mut deps = vec![Vec::new(); n];
    for (i, d) in deps.iter_mut().enumerate() {
        for j in 0..n {
            if j == i {
                continue;
            }
            let p = if j < i { density } else { forward };
            if rng.f64() < p {
                d.push(j);
            }
        }
    }
    Case { names, times, deps }
}

#[test]
fn validator_agrees_with_petgraph_on_random_graphs() {
    let mut rng = fastrand::Rng::with_seed(0x5e9_0e4ce);
    let (mut acyclic, mut cyclic) = (0, 0);
    for _ in 0..5_000 {
        let case = random_case(&mut rng);
        let nodes: Vec<OpNode> = (0..case.names.len())
            .map(|i| OpNode {
                name: &case.names[i],
                timestamp: case.times[i],
                depends_on: case.deps[i]
                    .iter()
                    .map(|&j| case.names[j].as_str())
                    .collect(),
            })
            .collect();
        let mut g: DiGraph<(), ()> = DiGraph::new();
        for _ in &nodes {
            g.add_node(());
        }
        for (i, ds) in case.deps.iter().enumerate() {
            for &j in ds {
                g.add_edge(NodeIndex::new(j), NodeIndex::new(i), ());
            }
        }
        let oracle = petgraph::algo::toposort(&g, None);
        match validate(&nodes) {
            Ok(plan) => {
                acyclic += 1;
                assert!(
                    oracle.is_ok(),
                    "validator accepted a graph petgraph finds cyclic"
                );
                assert_eq!(plan.order.len(), nodes.len());
                let mut pos = vec![usize::MAX; nodes.len()];
                for (p, &i) in plan.order.iter().enumerate() {
                    pos[i] = p;
                }
                for (i, ds) in case.deps.iter().enumerate() {
                    for &j in ds {
                        assert!(
                            pos[j] < pos[i],
                            "{} runs before its dependency {}",
                            nodes[i].name,
                            nodes[j].name
                        );
                        assert!(plan.level[i] > plan.level[j]);
                    }
                }
            }
            Err(errors) => {
                cyclic += 1;
                assert!(
                    oracle.is_err(),
                    "validator rejected an acyclic graph: {errors:?}"
                );
                assert!(!errors.is_empty());
                for e in &errors {
                    let GraphError::Cycle { path, closing } = e else {
                        panic!("unexpected error {e:?}")
                    };
                    assert!(path.len() >= 2);
                    // path[k] depends on path[k + 1], and the last depends on the first.
                    for w in 0..path.len() {
                        let (from, to) = (path[w], path[(w + 1) % path.len()]);
                        assert!(
                            case.deps[from].contains(&to),
                            "reported edge {from} → {to} does not exist"
                        );
                    }
                    let (op, entry) = *closing;
                    assert_eq!(op, *path.last().unwrap());
                    assert_eq!(
                        case.deps[op][entry], path[0],
                        "closing entry does not close the cycle"
                    );
                    let mut sorted = path.clone();
                    sorted.sort();
                    sorted.dedup();
                    assert_eq!(
                        sorted.len(),
                        path.len(),
                        "a cycle visits an operation twice: {path:?}"
                    );
                }
            }
        }
    }
    assert!(
        acyclic > 1_000 && cyclic > 500,
        "generator should produce both kinds: {acyclic} acyclic, {cyclic} cyclic"
    );
}

#[test]
fn validates_ten_thousand_operations() {
    // Scale: a wide random DAG with ~3 dependencies per operation stays valid and ordered.
    let mut rng = fastrand::Rng::with_seed(7);
    let n = 10_000;
    let names: Vec<String> = (0..n).map(|i| format!("op_{i:05}")).collect();
    let deps: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            if i == 0 {
                vec![]
            } else {
                (0..3).map(|_| rng.usize(0..i)).collect()
            }
        })
        .collect();
    let nodes: Vec<OpNode> = (0..n)
        .map(|i| OpNode {
            name: &names[i],
            timestamp: Timestamp::from_version_unchecked(20240101000000 + i as u64),
            depends_on: deps[i].iter().map(|&j| names[j].as_str()).collect(),
        })
        .collect();
    let plan = validate(&nodes).unwrap();
    // Every dependency points back in time, so the timestamp order is already valid and must be kept.
    assert_eq!(plan.order, (0..n).collect::<Vec<_>>());
}
