#[sequencer::operations]
mod ops;

fn main() {}
