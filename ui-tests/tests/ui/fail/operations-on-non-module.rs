#[sequencer::operations]
fn ops() {}

fn main() {}
