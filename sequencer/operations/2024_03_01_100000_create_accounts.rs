use sequencer::prelude::*;

/// create_accounts.
#[operation]
pub async fn handle(ctx: &Ctx) -> Result<()> {
    let _ = ctx;
    Ok(())
}

/// Undoes `handle`.
pub async fn rollback(ctx: &Ctx) -> Result<()> {
    let _ = ctx;
    Ok(())
}
