// `crate = "..."` names the sequencer crate when it is reachable under another path.
extern crate sequencer as seq;

#[seq::operations(crate = "seq")]
mod ops {
    use seq::prelude::*;

    #[operation(timestamp = "2024_01_15_120000")]
    async fn create_users(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let names: Vec<_> = ops::registry()
        .operations()
        .iter()
        .map(|op| op.meta.name)
        .collect();
    assert_eq!(names, ["2024_01_15_120000_create_users"]);
}
