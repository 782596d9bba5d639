//! The fuzz targets' inputs, replayed without the fuzzer.
//!
//! Every input that ever crashed a target is kept in `tests/regressions/<target>/`; the seed
//! corpus is `fuzz/seeds/<target>/`. Both are replayed here through the code the fuzz targets
//! run (`tokenvault::test_hooks::fuzz` and `::ops`, feature `test-hooks`), so a regression fails
//! `cargo test` even where cargo-fuzz is not installed. See `fuzz/run.sh` for the fuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use tokenvault::test_hooks::fuzz as targets;
use tokenvault::test_hooks::ops::{self as interpreter, Op};

type Check = fn(&[u8]) -> Result<(), String>;

const TARGETS: [(&str, Check); 7] = [
    ("record", targets::check_record),
    ("header", targets::check_header),
    ("payload", targets::check_payload),
    ("open_vault", targets::check_open_vault),
    ("ops", interpreter::run),
    ("response", targets::check_response),
    ("import", targets::check_import),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file of `dirs`; fails with the list of inputs that failed.
fn replay(target: &str, check: Check, dirs: &[PathBuf]) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for dir in dirs {
        for file in inputs(dir) {
            count += 1;
            let data = std::fs::read(&file).unwrap();
            match catch_unwind(AssertUnwindSafe(|| check(&data))) {
                Ok(Ok(())) => {}
                Ok(Err(violation)) => failures.push(format!("{}: {violation}", file.display())),
                Err(_) => failures.push(format!("{}: panicked (see above)", file.display())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} input(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

fn replay_target(target: &str) {
    let (_, check) = TARGETS.iter().find(|(t, _)| *t == target).unwrap();
    let dirs = [
        root().join("tests/regressions").join(target),
        root().join("fuzz/seeds").join(target),
    ];
    let n = replay(target, *check, &dirs);
    assert!(n > 0, "{target}: no seeds in fuzz/seeds/{target}");
}

#[test]
fn record_regressions_and_seeds() {
    replay_target("record");
}

#[test]
fn header_regressions_and_seeds() {
    replay_target("header");
}

#[test]
fn payload_regressions_and_seeds() {
    replay_target("payload");
}

#[test]
fn open_vault_regressions_and_seeds() {
    replay_target("open_vault");
}

#[test]
fn ops_regressions_and_seeds() {
    replay_target("ops");
}

#[test]
fn response_regressions_and_seeds() {
    replay_target("response");
}

#[test]
fn import_regressions_and_seeds() {
    replay_target("import");
}

/// The seed programs of the `ops` target: together they run every operation, in both its
/// succeeding and its failing form.
fn ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    vec![
        (
            "crud",
            interpreter::encode(&[
                (PutToken, &[0, 0, 7]),
                (GetToken, &[0, 0]),
                (GetSecret, &[0, 0]),
                (GetVersioned, &[0, 0]),
                (PutSecret, &[0, 1, 3]),
                (GetSecret, &[0, 1]),
                (GetToken, &[0, 1]),
                (Keys, &[0]),
                (Remove, &[0, 0]),
                (Remove, &[0, 0]),
                (Keys, &[0]),
                (Namespaces, &[]),
                (Verify, &[]),
            ]),
        ),
        (
            "cas",
            interpreter::encode(&[
                (CasNone, &[1, 2, 1]),
                (CasNone, &[1, 2, 2]),
                (CasCurrent, &[1, 2, 3]),
                (CasStale, &[1, 2, 4, 0]),
                (CarStale, &[1, 2, 0]),
                (CarCurrent, &[1, 2]),
                (CarCurrent, &[1, 2]),
                (CasStale, &[2, 0, 5, 0]),
                (Namespaces, &[]),
                (GetVersioned, &[1, 2]),
                (Verify, &[]),
            ]),
        ),
        (
            "keyslots",
            interpreter::encode(&[
                (RemoveKeyslot, &[0]),
                (AddKeyslot, &[1]),
                (AddKeyslot, &[2]),
                (AddKeyslot, &[2]),
                (Keyslots, &[]),
                (RotateMasterKey, &[0]),
                (ChangeKey, &[1, 3]),
                (ChangeKey, &[1, 3]),
                (Reopen, &[3, 0]),
                (RotateMasterKey, &[0]),
                (RotateMasterKey, &[1]),
                (Reopen, &[1, 0x82]),
                (Reopen, &[1, 0xc1]),
                (Reopen, &[2, 0x83]),
                (RotateMasterKey, &[1]),
                (RemoveKeyslot, &[0]),
                (RemoveKeyslot, &[0xf3]),
                (Keyslots, &[]),
            ]),
        ),
        (
            "rotation",
            interpreter::encode(&[
                (RotateNamespaceKey, &[0]),
                (PutToken, &[0, 0, 0x81]),
                (PutToken, &[0, 1, 2]),
                (RotateNamespaceKey, &[0]),
                (PutSecret, &[0, 2, 5]),
                (RotateNamespaceKey, &[0]),
                (Reopen, &[0, 0]),
                (GetVersioned, &[0, 0]),
                (RemoveNamespace, &[0]),
                (RemoveNamespace, &[0]),
                (PutToken, &[0, 0, 9]),
                (Verify, &[]),
            ]),
        ),
        (
            "limits",
            interpreter::encode(&[
                (PutLargest, &[2, 3, 0]),
                (PutLargest, &[2, 3, 1]),
                (PutLargest, &[2, 3, 2]),
                (GetSecret, &[2, 3]),
                (InvalidName, &[0, 0, 0]),
                (InvalidName, &[0, 0, 1]),
                (InvalidName, &[0, 0, 2]),
                (InvalidName, &[0, 0, 3]),
                (Verify, &[]),
            ]),
        ),
    ]
}

#[test]
fn ops_seed_programs_run_clean() {
    for (name, program) in ops_seeds() {
        if let Err(e) = interpreter::run(&program) {
            panic!("ops seed {name}: {e}");
        }
    }
}

/// Writes the seed corpus into `fuzz/seeds/<target>/` for the targets it has seeds for,
/// replacing what is there (the `response` and `import` seeds are files kept by hand). The
/// fixture vault is random (keys, nonces), so the files change on every run: run it only when
/// the formats or the programs change.
///
/// `cargo test --test fuzz_regressions -- --ignored generate_seeds`
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn generate_seeds() {
    let mut seeds: Vec<(&str, String, Vec<u8>)> = targets::seeds();
    for (name, program) in ops_seeds() {
        seeds.push(("ops", name.to_string(), program));
    }
    // Only the targets generated here: the `response` and `import` seeds are kept by hand.
    for (target, _) in TARGETS {
        if !seeds.iter().any(|(t, _, _)| *t == target) {
            continue;
        }
        let dir = root().join("fuzz/seeds").join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (target, name, data) in seeds {
        let path = root().join("fuzz/seeds").join(target).join(name);
        std::fs::write(path, data).unwrap();
    }
}

/// Prints what each `open_vault` seed's edited header gives when opened.
///
/// `cargo test --test fuzz_regressions -- --ignored explain --nocapture`
#[test]
#[ignore = "diagnostic output only"]
fn explain_open_vault_inputs() {
    let dir = std::env::var("OPEN_VAULT_INPUTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("fuzz/seeds/open_vault"));
    for file in inputs(&dir) {
        let data = std::fs::read(&file).unwrap();
        println!("{}: {}", file.display(), targets::explain_open_vault(&data));
    }
}
