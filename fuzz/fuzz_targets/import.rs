//! `import`: see `check_import` in tests/fuzz_support/targets.rs (shared with
//! tests/fuzz_regressions.rs, which replays every crash input without the fuzzer).
#![no_main]

#[path = "../../tests/fuzz_support/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = targets::check_import(data) {
        panic!("invariant violated: {violation}");
    }
});
