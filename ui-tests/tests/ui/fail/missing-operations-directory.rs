#[sequencer::operations("no/such/operations")]
mod ops {}

fn main() {}
