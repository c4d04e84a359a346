// An operation file of a directory takes its timestamp from its file name.
#[path = "../fixtures/timestamp-in-file/2024_01_15_120000_create_users.rs"]
mod create_users;

fn main() {}
