//! `payload`: see `check_payload` in src/test_hooks/fuzz.rs (shared with
//! tests/engine/fuzz_regressions.rs, which replays every crash input without the fuzzer).
#![no_main]

use tokenvault::test_hooks::fuzz as targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = targets::check_payload(data) {
        panic!("invariant violated: {violation}");
    }
});
