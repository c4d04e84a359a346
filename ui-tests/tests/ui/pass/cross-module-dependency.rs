// An operation depending on an operation of another `#[operations]` module, by path; the registries merge.
use sequencer::Dependency;

#[sequencer::operations]
mod a {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000")]
    pub async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

#[sequencer::operations]
mod b {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_110000", depends_on = [super::a::create_users])]
    async fn backfill_orders(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let registry = sequencer::Registry::builder()
        .merge(a::registry())
        .merge(b::registry())
        .build()
        .unwrap();
    let backfill = registry.get("2024_01_15_110000_backfill_orders").unwrap();
    assert_eq!(
        backfill.meta.depends_on,
        [Dependency::Operation("2024_01_15_120000_create_users")]
    );
    // The dependency moves the earlier timestamp after the operation it depends on.
    let order: Vec<_> = registry
        .ordered()
        .unwrap()
        .iter()
        .map(|op| op.meta.name)
        .collect();
    assert_eq!(
        order,
        [
            "2024_01_15_120000_create_users",
            "2024_01_15_110000_backfill_orders"
        ]
    );
}
