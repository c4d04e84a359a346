//! The parser, checker and code generator without a compiler in the loop: proc_macro2 tokens in, tokens or
//! errors out.

use std::time::Duration;

use quote::quote;
use sequencer_core::codegen::attr::{self, Dep, ExecuteAt};
use sequencer_core::codegen::{operation_in_file, Errors};
use sequencer_core::Schedule;

fn messages(errors: &Errors) -> Vec<String> {
    let tokens = errors.to_compile_errors().to_string();
    tokens
        .split("compile_error !")
        .skip(1)
        .map(|s| {
            s.trim()
                .trim_start_matches(['{', '('])
                .trim()
                .split("\" }")
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

#[test]
fn parses_every_key() {
    let mut errors = Errors::default();
    let a = attr::parse(
        quote! {
            timestamp = "2024_01_15_120000", name = "x", depends_on = [a, super::b::c, "n", migration(20240101000000)],
            rollback = undo, allowed_to_fail, retries = 5, backoff = ["1s", 5], retry_until = "1h", max_exceptions = 3,
            timeout = 120, fail_on_timeout, execute_at = "02:30", asynchronous, queue = "q", unique = "k",
            unique_for = "1h", middleware = [rate_limited("api", 60/min), without_overlapping("k").release_after(60)],
            tags = ["t"], before = b, after = a, failed = f, transaction, encrypted, environments = ["production"],
            should_run = s, idempotent, throttle_on = busy, estimate = "5m"
        },
        &mut errors,
    );
    assert!(errors.is_empty(), "{:?}", messages(&errors));
    assert_eq!(
        a.keys.len(),
        attr::KEYS.len() - 1,
        "every key but `delay` (it contradicts `execute_at`)"
    );
    assert_eq!(a.timestamp.unwrap().0.version(), 20240115120000);
    assert!(matches!(
        &a.depends_on[..],
        [
            Dep::Path(_),
            Dep::Path(_),
            Dep::Name(_),
            Dep::Migration(20240101000000, _)
        ]
    ));
    assert_eq!((a.retries, a.max_exceptions), (Some(5), Some(3)));
    assert_eq!(a.timeout, Some(Duration::from_secs(120)));
    assert_eq!(a.estimate, Some(Duration::from_secs(300)));
    assert_eq!(a.retry_until, Some(Duration::from_secs(3600)));
    assert!(matches!(
        a.execute_at,
        Some(ExecuteAt::Fixed(Schedule::TimeOfDay {
            hour: 2,
            minute: 30,
            second: 0
        }))
    ));
    assert_eq!(a.middleware.len(), 2);
    assert!(
        a.allowed_to_fail
            && a.fail_on_timeout
            && a.asynchronous
            && a.transaction
            && a.encrypted
            && a.idempotent
    );
    assert_eq!(
        (a.tags, a.environments),
        (vec!["t".to_owned()], vec!["production".to_owned()])
    );
}

#[test]
fn reports_every_error_of_an_attribute_together() {
    let mut errors = Errors::default();
    attr::parse(
        quote!(
            timestamp = "2024_02_30_120000",
            retires = 3,
            tags = "x",
            tags = ["y"],
            timeout = "2 fortnights"
        ),
        &mut errors,
    );
    let msgs = messages(&errors);
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    assert!(
        msgs[0].contains("impossible timestamp `2024_02_30_120000`"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("unknown `operation` key `retires`; did you mean `retries`?"),
        "{msgs:?}"
    );
    assert!(
        msgs[2].contains("`tags` expects a list of strings"),
        "{msgs:?}"
    );
    assert!(msgs[3].contains("`tags` set multiple times"), "{msgs:?}");
    assert!(
        msgs[4].contains("invalid duration `2 fortnights`"),
        "{msgs:?}"
    );
}

#[test]
fn inline_module_emits_the_users_functions_even_on_error() {
    let out = sequencer_core::codegen::operations_module(
        quote!(),
        quote! {
            mod ops {
                #[operation(timestamp = "2024_01_15_120000", depends_on = [b])]
                async fn a(ctx: &Ctx) -> Result<()> { Ok(()) }
                #[operation(timestamp = "2024_01_15_120001", depends_on = [a])]
                async fn b(ctx: &Ctx) -> Result<()> { Ok(()) }
            }
        },
        None,
    )
    .to_string();
    assert!(out.contains("async fn a"), "{out}");
    assert!(out.contains("async fn b"), "{out}");
    assert!(
        !out.contains("# [operation"),
        "the attributes are taken off: {out}"
    );
    assert!(
        out.contains(
            "dependency cycle: 2024_01_15_120001_b → 2024_01_15_120000_a → 2024_01_15_120001_b"
        ),
        "{out}"
    );
    assert!(
        out.contains("fn registry"),
        "a registry() stub keeps callers compiling: {out}"
    );
}

#[test]
fn inline_module_generates_companion_types_and_registry() {
    let out = sequencer_core::codegen::operations_module(
        quote!(crate = "::my_seq"),
        quote! {
            mod ops {
                #[operation(timestamp = "20240115120000")]
                pub async fn a(ctx: &Ctx) -> Result<()> { Ok(()) }
            }
        },
        None,
    )
    .to_string();
    // The companion type is an alias of the module's one generic type, whose `Operation` impl reads the tables.
    assert!(
        out.contains("pub type a = __SequencerOperation < 0 >"),
        "{out}"
    );
    assert!(
        out.contains("impl < const I : usize > Operation for __SequencerOperation < I >"),
        "{out}"
    );
    assert!(out.contains("fn registry"), "{out}");
    assert!(out.contains("\"2024_01_15_120000_a\""), "{out}");
    assert!(!out.contains("compile_error"), "{out}");
}

#[test]
fn operation_outside_a_module_or_directory_is_an_error() {
    let out = operation_in_file(
        quote!(timestamp = "2024_01_15_120000"),
        quote!(
            async fn a(ctx: &Ctx) -> Result<()> {
                Ok(())
            }
        ),
        None,
    )
    .to_string();
    assert!(
        out.contains("must be inside a `#[sequencer::operations] mod"),
        "{out}"
    );
    assert!(
        out.contains("async fn a"),
        "the function is still emitted: {out}"
    );
}

#[test]
fn directory_file_takes_its_timestamp_and_name_from_the_file() {
    let dir = std::env::temp_dir().join(format!("sequencer-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("2024_01_15_120000_create_users.rs");
    std::fs::write(&file, "#[operation] pub async fn handle(ctx: &Ctx) -> Result<()> { Ok(()) }\npub async fn rollback(ctx: &Ctx) -> Result<()> { Ok(()) }").unwrap();
    std::fs::write(dir.join("2024_01_16_000000_other.rs"), "").unwrap();
    let item = quote!(
        pub async fn handle(ctx: &Ctx) -> Result<()> {
            Ok(())
        }
    );
    let out = operation_in_file(
        quote!(depends_on = [othr]),
        item.clone(),
        Some(file.clone()),
    )
    .to_string();
    assert!(out.contains("unknown dependency `othr`"), "{out}");
    assert!(out.contains("did you mean `other`?"), "{out}");
    let out = operation_in_file(
        quote!(depends_on = [other]),
        item.clone(),
        Some(file.clone()),
    )
    .to_string();
    assert!(!out.contains("compile_error"), "{out}");
    assert!(out.contains("\"2024_01_15_120000_create_users\""), "{out}");
    assert!(out.contains("\"2024_01_16_000000_other\""), "{out}");
    assert!(out.contains("rollbackable : true"), "{out}");
    let out =
        operation_in_file(quote!(timestamp = "2024_01_15_120000"), item, Some(file)).to_string();
    assert!(
        out.contains("the timestamp comes from the file name"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn file_names() {
    use sequencer_core::codegen::dir::parse_file_name;
    let (ts, name) = parse_file_name("2024_01_15_120000_create_users.rs").unwrap();
    assert_eq!(
        (ts.version(), name.as_str()),
        (20240115120000, "create_users")
    );
    assert!(parse_file_name("create_users.rs")
        .unwrap_err()
        .contains("does not match"));
    assert!(parse_file_name("2024_01_15_120000_create_users.txt").is_err());
    assert!(parse_file_name("2024_02_30_120000_x.rs")
        .unwrap_err()
        .contains("impossible"));
    assert!(parse_file_name("2024_01_15_120000_Create-Users.rs")
        .unwrap_err()
        .contains("snake_case"));
    assert!(parse_file_name("2024_01_15_120000_fn.rs").is_err());
}
