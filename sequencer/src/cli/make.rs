//! `make NAME`: a new operation file for the directory form, or (`--inline`) the function to paste into an
//! inline `#[sequencer::operations]` module.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use super::args::MakeArgs;
use super::output::{print, println};
use crate::Timestamp;

/// Writes the file, or prints the inline function; runs before (and without) any database.
pub(super) fn make(args: &MakeArgs) -> ExitCode {
    let valid = args
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        eprintln!(
            "error: `{}` is not a snake_case name; try `{}`",
            args.name,
            snake(&args.name)
        );
        return ExitCode::from(2);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let Some(ts) = Timestamp::from_unix_seconds(now) else {
        eprintln!("error: the system clock is outside years 1–9999");
        return ExitCode::from(2);
    };
    let mut keys = Vec::new();
    if args.inline {
        keys.push(format!("timestamp = \"{ts}\""));
    }
    if !args.dependencies.is_empty() {
        keys.push(format!("depends_on = [{}]", args.dependencies.join(", ")));
    }
    if args.retryable {
        keys.push("retries = 3, backoff = [1, 5]".to_owned());
    }
    if args.transaction {
        keys.push("transaction".to_owned());
    }
    if args.inline {
        print!("{}", inline_snippet(&args.name, keys, args.rollback));
        eprintln!("Paste it into your `#[sequencer::operations] mod` (its timestamp is now, UTC).");
        return ExitCode::SUCCESS;
    }
    let new_dir = !args.dir.exists();
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("error: cannot create `{}`: {e}", args.dir.display());
        return ExitCode::from(2);
    }
    let path = args.dir.join(format!("{ts}_{}.rs", args.name));
    let attr = if keys.is_empty() {
        "#[operation]".to_owned()
    } else {
        format!("#[operation({})]", keys.join(", "))
    };
    let mut src = format!(
        "use sequencer::prelude::*;\n\n/// {name}.\n{attr}\npub async fn handle(ctx: &Ctx) -> Result<()> {{\n    let _ = ctx;\n    Ok(())\n}}\n",
        name = args.name
    );
    if args.rollback {
        src.push_str("\n/// Undoes `handle`.\npub async fn rollback(ctx: &Ctx) -> Result<()> {\n    let _ = ctx;\n    Ok(())\n}\n");
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, src.as_bytes()));
    match created {
        Ok(()) => {
            println!("Created {}", path.display());
            if new_dir {
                eprintln!(
                    "note: created the directory `{}`, for `#[sequencer::operations(\"{}\")]`; for an inline module, `make {} --inline` prints the function to paste instead",
                    args.dir.display(),
                    args.dir.display(),
                    args.name
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// The operation for the inline form: a function to paste into the `#[sequencer::operations]` module, its
/// `timestamp` the first of `keys`.
fn inline_snippet(name: &str, mut keys: Vec<String>, rollback: bool) -> String {
    let undo = format!("undo_{name}");
    if rollback {
        keys.insert(1, format!("rollback = {undo}"));
    }
    let mut src = format!(
        "/// {name}.\n#[operation({keys})]\nasync fn {name}(ctx: &Ctx) -> Result<()> {{\n    let _ = ctx;\n    Ok(())\n}}\n",
        keys = keys.join(", ")
    );
    if rollback {
        src.push_str(&format!(
            "\n/// Undoes `{name}`.\nasync fn {undo}(ctx: &Ctx) -> Result<()> {{\n    let _ = ctx;\n    Ok(())\n}}\n"
        ));
    }
    src
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}
