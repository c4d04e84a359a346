use sequencer::prelude::*;

#[operation(tags = ["accounts"])]
pub async fn handle(_ctx: &Ctx) -> Result<()> {
    crate::record("create_accounts");
    Ok(())
}

pub async fn rollback(_ctx: &Ctx) -> Result<()> {
    crate::record("rollback create_accounts");
    Ok(())
}
