#[sequencer::operations]
mod ops {
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_15_120000")]
    async fn create_users(_ctx: &Ctx) -> Result<(), String> {
        Err("no users".to_owned())
    }
}

fn main() {}
