use sequencer::prelude::*;

/// seed_plans.
#[operation(depends_on = [create_accounts], retries = 3, backoff = [1, 5])]
pub async fn handle(ctx: &Ctx) -> Result<()> {
    let _ = ctx;
    Ok(())
}
