//! Generates one `#[sequencer::operations]` module of `SEQUENCER_SCALE_OPS` (default 2,000) operations, each
//! depending on up to three random earlier ones, seeded so every build generates the same module.

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SEQUENCER_SCALE_OPS");
    // The benchmark's baseline: the same async fns in a hand-written table, without the macros.
    println!("cargo:rerun-if-env-changed=SEQUENCER_SCALE_PLAIN");
    let plain = std::env::var("SEQUENCER_SCALE_PLAIN").is_ok_and(|v| v == "1");
    let n: usize = std::env::var("SEQUENCER_SCALE_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let mut rng = fastrand::Rng::with_seed(2_000);
    let mut out = String::from(if plain {
        "pub mod ops {\n    #[allow(unused_imports)]\n    use sequencer::prelude::*;\n"
    } else {
        "#[sequencer::operations]\npub mod ops {\n    #[allow(unused_imports)]\n    use sequencer::prelude::*;\n"
    });
    for i in 0..n {
        // One operation per second from 2024-01-01 00:00:00.
        let (h, m, s) = (i / 3600, i / 60 % 60, i % 60);
        let day = 1 + h / 24;
        let ts = format!("2024_01_{day:02}_{:02}{m:02}{s:02}", h % 24);
        let mut deps: Vec<usize> = if i == 0 {
            Vec::new()
        } else {
            (0..rng.usize(0..=3)).map(|_| rng.usize(0..i)).collect()
        };
        deps.sort_unstable();
        deps.dedup();
        let deps: Vec<String> = deps.iter().map(|d| format!("op_{d}")).collect();
        let extra = match i % 4 {
            0 => ", retries = 3, backoff = [1, 5]",
            1 => ", timeout = \"2m\", tags = [\"scale\"]",
            2 => ", idempotent",
            _ => "",
        };
        if !plain {
            writeln!(
                out,
                "    #[operation(timestamp = \"{ts}\", depends_on = [{}]{extra})]",
                deps.join(", ")
            )
            .unwrap();
        }
        writeln!(
            out,
            "    pub async fn op_{i}(_ctx: &Ctx) -> Result<()> {{ Ok(()) }}"
        )
        .unwrap();
    }
    if plain {
        // A hand-written registry: each operation's name and boxed handler.
        out.push_str("    pub static OPERATIONS: &[(&str, sequencer::Handler)] = &[\n");
        for i in 0..n {
            writeln!(out, "        (\"op_{i}\", |ctx| Box::pin(op_{i}(ctx))),").unwrap();
        }
        out.push_str("    ];\n");
    }
    out.push_str("}\n");
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("ops.rs");
    std::fs::write(path, out).unwrap();
}
