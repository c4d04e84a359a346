//! Quick start: three operations in an inline module, one with a dependency, one rollbackable.
//!
//! Run with `cargo run --example quickstart`. Until the runtime lands, it prints the validated plan.

#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    /// Creates the default roles.
    #[operation(timestamp = "2024_01_15_120000", rollback = drop_roles, tags = ["setup"])]
    async fn create_roles(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    async fn drop_roles(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Backfills order totals; needs the roles first even though its timestamp is earlier.
    #[operation(timestamp = "2024_01_10_090000", depends_on = [create_roles], retries = 3, backoff = [1, 5], timeout = "2m")]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    #[operation(timestamp = "2024_02_01_000000", allowed_to_fail, idempotent)]
    async fn warm_cache(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let registry = ops::registry();
    let plan = match registry.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!("{} operations, execution order:", registry.len());
    for (step, &i) in plan.order.iter().enumerate() {
        let op = &registry.operations()[i].meta;
        let mut notes = Vec::new();
        if op.rollbackable {
            notes.push("rollbackable".to_string());
        }
        if op.retry.tries > 1 {
            notes.push(format!("{} tries", op.retry.tries));
        }
        if op.allowed_to_fail {
            notes.push("allowed to fail".to_string());
        }
        for d in op.depends_on {
            if let sequencer::Dependency::Operation(name) = d {
                notes.push(format!("after {name}"));
            }
        }
        println!(
            "  {}. {} (wave {}) {}",
            step + 1,
            op.name,
            plan.level[i],
            notes.join(", ")
        );
    }
}
