// `depends_on` in an operation file names a sibling file by its name part.
#[path = "../fixtures/unknown-dependency-in-file/2024_01_15_120001_backfill_orders.rs"]
mod backfill_orders;
#[path = "../fixtures/unknown-dependency-in-file/2024_01_15_120000_create_users.rs"]
mod create_users;

fn main() {}
