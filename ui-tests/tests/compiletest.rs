//! Runs the trybuild cases of `tests/ui`: every `fail/*.rs` must fail to compile with the error in its
//! `.stderr`, every `pass/*.rs` must compile and run.

#[test]
fn ui_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}

#[test]
fn ui_pass() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
}
