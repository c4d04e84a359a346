#[sequencer::operations(krate = "sequencer")]
mod ops {}

fn main() {}
