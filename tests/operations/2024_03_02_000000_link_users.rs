use sequencer::prelude::*;

#[operation(depends_on = ["2024_03_01_090000_seed_plans", super::super::users::create_users, migration(20240301000000)])]
pub async fn handle(_ctx: &Ctx) -> Result<()> {
    crate::record("link_users");
    Err(Skip("no users to link"))
}
