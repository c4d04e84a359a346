// `#[operation]` on `handle` in a file whose name lacks the `YYYY_MM_DD_HHMMSS_` prefix.
#[path = "../fixtures/badly-named-file/create_users.rs"]
mod create_users;

fn main() {}
