//! Unit tests of the graph analysis and its drawings.

use super::*;
use sequencer_core::{Dependency, OperationMeta, Timestamp};

use crate::ctx::Ctx;
use crate::registry::{BoxFuture, OperationDef};
use crate::result::Result;

fn h(_: &Ctx) -> BoxFuture<'_, Result<()>> {
    Box::pin(async { Ok(()) })
}

const fn def(name: &'static str, second: u64, depends_on: &'static [Dependency]) -> OperationDef {
    OperationDef::new(
        OperationMeta {
            name,
            timestamp: Timestamp::from_version_unchecked(20240101000000 + second),
            fn_name: name,
            depends_on,
            ..crate::registry::BLANK_META
        },
        h,
    )
}

static A: OperationDef = def("a", 1, &[]);
static B: OperationDef = def("b", 2, &[Dependency::Operation("a")]);
static C: OperationDef = def("c", 3, &[Dependency::Operation("a")]);
static D: OperationDef = def(
    "d",
    4,
    &[Dependency::Operation("b"), Dependency::Operation("c")],
);
static E: OperationDef = def("e", 5, &[]);

/// a → b, a → c, b → d, c → d, and an independent e; declared out of order on purpose.
fn diamond() -> Registry {
    Registry::builder()
        .operation(&D)
        .operation(&E)
        .operation(&B)
        .operation(&A)
        .operation(&C)
        .build()
        .expect("valid registry")
}

fn ms(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
}

fn names(registry: &Registry, ids: &[usize]) -> Vec<&'static str> {
    ids.iter()
        .map(|&i| registry.operations()[i].meta.name)
        .collect()
}

#[test]
fn waves_and_critical_path_of_a_fan_out_fan_in() {
    let r = diamond();
    let v = analyze(&r, &ms(&[("b", 100), ("c", 10)])).unwrap();
    let waves: Vec<_> = v.waves.iter().map(|w| names(&r, w)).collect();
    assert_eq!(waves, [vec!["a", "e"], vec!["b", "c"], vec!["d"]]);
    assert_eq!(names(&r, &v.critical_path), ["a", "b", "d"]);
    assert_eq!(v.critical_weight, 1 + 100 + 1);
    assert_eq!(v.total_work, 1 + 100 + 10 + 1 + 1);
    assert_eq!(v.durations_known, 2);
    assert!(!v.all_durations_known());
    let start = |name: &str| {
        let i = r
            .operations()
            .iter()
            .position(|o| o.meta.name == name)
            .unwrap();
        v.earliest_start[i]
    };
    assert_eq!(
        ["a", "b", "c", "d", "e"].map(start),
        [0, 1, 1, 101, 0],
        "earliest starts"
    );
    assert!((v.parallelism() - 113.0 / 102.0).abs() < 1e-9);
}

#[test]
fn critical_path_follows_the_heavier_branch() {
    let r = diamond();
    let v = analyze(&r, &ms(&[("b", 10), ("c", 100)])).unwrap();
    assert_eq!(names(&r, &v.critical_path), ["a", "c", "d"]);
    // A heavy independent operation is a critical path of its own.
    let v = analyze(&r, &ms(&[("e", 1000)])).unwrap();
    assert_eq!(names(&r, &v.critical_path), ["e"]);
    assert_eq!(v.critical_weight, 1000);
}

#[test]
fn text_lists_waves_statuses_and_the_critical_path() {
    let r = diamond();
    let statuses = HashMap::from([
        ("a".to_owned(), Status::Completed),
        ("b".to_owned(), Status::Running),
    ]);
    let out = render(
        &r,
        &statuses,
        &ms(&[("b", 100), ("c", 10)]),
        GraphFormat::Text,
    )
    .unwrap();
    let expected = "\
5 operations, 3 waves, critical path 3 ops (weight 102)
wave 0:
  [completed] a *
  [pending] e
wave 1:
  [running] b *  (after a)
  [pending] c  (after a)
wave 2:
  [pending] d *  (after b, c)
critical path: a → b → d
";
    assert_eq!(out, expected);

    let all = ms(&[("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)]);
    let out = render(&r, &HashMap::new(), &all, GraphFormat::Text).unwrap();
    assert!(
        out.starts_with("5 operations, 3 waves, critical path 3 ops (8 ms)\n"),
        "{out}"
    );
    assert!(out.contains("critical path: a → c → d\n"), "{out}");
}

#[test]
fn dot_has_one_node_per_op_and_one_edge_per_dependency() {
    let r = diamond();
    let statuses = HashMap::from([
        ("a".to_owned(), Status::Completed),
        ("c".to_owned(), Status::Failed),
        ("e".to_owned(), Status::RolledBack),
    ]);
    let out = render(
        &r,
        &statuses,
        &ms(&[("b", 100), ("c", 10)]),
        GraphFormat::Dot,
    )
    .unwrap();
    assert!(
        out.starts_with("digraph operations {\n  rankdir=LR;\n"),
        "{out}"
    );
    assert!(out.trim_end().ends_with('}'), "{out}");
    assert_eq!(out.matches("->").count(), 4, "{out}");
    assert_eq!(out.matches("[label=").count(), 5, "{out}");
    assert_eq!(out.matches("penwidth=2").count(), 2, "{out}");
    assert!(
        out.contains("\"a\" -> \"b\" [style=bold, penwidth=2];"),
        "{out}"
    );
    assert!(
        out.contains("\"b\" -> \"d\" [style=bold, penwidth=2];"),
        "{out}"
    );
    assert!(out.contains("\"a\" -> \"c\";"), "{out}");
    assert!(out.contains("\"c\" -> \"d\";"), "{out}");
    assert!(out.contains("\"a\" [label=\"a\\ncompleted\", fillcolor=green];"));
    assert!(out.contains("\"c\" [label=\"c\\nfailed\", fillcolor=red];"));
    assert!(out.contains("\"d\" [label=\"d\\npending\", fillcolor=white];"));
    assert!(out.contains("\"e\" [label=\"e\\nrolled_back\", fillcolor=lightblue];"));
    assert!(out.contains("{ rank=same; \"a\"; \"e\"; }"), "{out}");
    assert!(out.contains("{ rank=same; \"b\"; \"c\"; }"), "{out}");
    assert!(out.contains("{ rank=same; \"d\"; }"), "{out}");
    assert_eq!(out.matches('{').count(), out.matches('}').count());
}

#[test]
fn mermaid_draws_critical_edges_thick_and_classes_by_status() {
    let r = diamond();
    let statuses = HashMap::from([("a".to_owned(), Status::Completed)]);
    let out = render(
        &r,
        &statuses,
        &ms(&[("b", 100), ("c", 10)]),
        GraphFormat::Mermaid,
    )
    .unwrap();
    let id = |name: &str| {
        let i = r
            .operations()
            .iter()
            .position(|o| o.meta.name == name)
            .unwrap();
        format!("op{i}")
    };
    let (a, b, c, d, e) = (id("a"), id("b"), id("c"), id("d"), id("e"));
    assert!(out.starts_with("flowchart LR\n"), "{out}");
    assert!(out.contains(&format!("{a}[\"a<br/>completed\"]")), "{out}");
    assert!(out.contains(&format!("{e}[\"e<br/>pending\"]")), "{out}");
    assert_eq!(out.matches("==>").count(), 2, "{out}");
    assert_eq!(out.matches("-->").count(), 2, "{out}");
    assert!(out.contains(&format!("{a} ==> {b}\n")), "{out}");
    assert!(out.contains(&format!("{b} ==> {d}\n")), "{out}");
    assert!(out.contains(&format!("{a} --> {c}\n")), "{out}");
    assert!(out.contains(&format!("{c} --> {d}\n")), "{out}");
    assert!(out.contains("classDef completed "), "{out}");
    assert!(out.contains(&format!("class {a} completed;")), "{out}");
    assert!(out.contains("classDef pending "), "{out}");
    assert!(
        !out.contains("classDef failed"),
        "only statuses in use: {out}"
    );
}

#[test]
fn mermaid_classes_every_status_in_use() {
    let r = diamond();
    let statuses = HashMap::from([
        ("a".to_owned(), Status::RollingBack),
        ("b".to_owned(), Status::RollbackInterrupted),
        ("c".to_owned(), Status::Stale),
    ]);
    let out = render(&r, &statuses, &HashMap::new(), GraphFormat::Mermaid).unwrap();
    for status in ["rolling_back", "undo_interrupted", "stale", "pending"] {
        assert!(
            out.contains(&format!("classDef {status} ")),
            "{status}: {out}"
        );
    }
    let classed = out.lines().filter(|l| l.starts_with("  class ")).count();
    assert_eq!(classed, 4, "one class line per status in use: {out}");
}

static QUOTED: OperationDef = def("say \"hi\" <#1>", 1, &[]);
static AFTER_QUOTED: OperationDef = def(
    "back\\slash",
    2,
    &[Dependency::Operation("say \"hi\" <#1>")],
);

#[test]
fn names_are_escaped() {
    let r = Registry::builder()
        .operation(&QUOTED)
        .operation(&AFTER_QUOTED)
        .build()
        .unwrap();
    let none = HashMap::new();
    let dot = render(&r, &HashMap::new(), &none, GraphFormat::Dot).unwrap();
    assert!(
        dot.contains(r#""say \"hi\" <#1>" -> "back\\slash" [style=bold, penwidth=2];"#),
        "{dot}"
    );
    let mermaid = render(&r, &HashMap::new(), &none, GraphFormat::Mermaid).unwrap();
    assert!(
        mermaid.contains("op0[\"say #quot;hi#quot; #lt;#35;1#gt;<br/>pending\"]"),
        "{mermaid}"
    );
    assert!(mermaid.contains("op0 ==> op1"), "{mermaid}");
}

#[test]
fn empty_registry() {
    let r = Registry::default();
    let none = HashMap::new();
    let v = analyze(&r, &none).unwrap();
    assert!(v.critical_path.is_empty() && v.waves.is_empty());
    assert_eq!((v.critical_weight, v.total_work), (0, 0));
    assert_eq!(
        render(&r, &HashMap::new(), &none, GraphFormat::Text).unwrap(),
        "0 operations, 0 waves, critical path 0 ops (weight 0)\ncritical path: (none)\n"
    );
    let dot = render(&r, &HashMap::new(), &none, GraphFormat::Dot).unwrap();
    assert!(dot.starts_with("digraph operations {") && dot.ends_with("}\n"));
    let mermaid = render(&r, &HashMap::new(), &none, GraphFormat::Mermaid).unwrap();
    assert_eq!(mermaid, "flowchart LR\n");
}

#[test]
fn formats_parse_and_display() {
    for f in GraphFormat::ALL {
        assert_eq!(f.to_string().parse::<GraphFormat>(), Ok(f));
    }
    assert_eq!(" DOT ".parse::<GraphFormat>(), Ok(GraphFormat::Dot));
    let err = "svg".parse::<GraphFormat>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown graph format `svg`: expected one of text, dot, mermaid"
    );
    assert_eq!(GraphFormat::default(), GraphFormat::Text);
}
