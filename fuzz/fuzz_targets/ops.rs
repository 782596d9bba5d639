//! `ops`: operation sequences checked against a model; see src/test_hooks/ops.rs (shared
//! with tests/engine/fuzz_regressions.rs, which replays every crash input without the fuzzer).
#![no_main]

use tokenvault::test_hooks::ops as interpreter;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(divergence) = interpreter::run(data) {
        panic!("the vault diverged from the model: {divergence}");
    }
});
