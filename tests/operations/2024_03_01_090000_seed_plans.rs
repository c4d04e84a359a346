use sequencer::prelude::*;

#[operation(depends_on = [create_accounts], retries = 3, backoff = "5s")]
pub async fn handle(_ctx: &Ctx) -> Result<()> {
    crate::record("seed_plans");
    Ok(())
}
