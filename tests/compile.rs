//! Compile-time guarantees of the macros and the typed API, proven with
//! trybuild: the `pass` programs compile and run, each `fail` program is
//! rejected with the message checked in next to it.
//!
//! Regenerate the expected messages with `TRYBUILD=overwrite cargo test --test compile`
//! and read the diff: each must point at the user's own token.

#[test]
fn compile_time_guarantees() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
