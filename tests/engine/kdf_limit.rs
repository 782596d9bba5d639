//! The cost of a derivation that a hostile header can ask for is capped by the caller
//! (issue 12, finding 6): a passphrase slot above `VaultOptions::kdf_limit` is never derived.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sha2::{Digest, Sha256};
use support::BackendExt;
use support::{fast, passphrase};
use tokenvault::backend::{Backend, MemoryBackend};
use tokenvault::{Error, KdfParams, Vault, VaultOptions};

/// Header offsets (docs/format.md section 3): magic 8, version 2, body_len 4, vault_id 16,
/// seqid 8, next_slot_id 4, slot_count 2, then slot 0: id 4, kind 1, params_len 2, Argon2
/// version 4, m 4, t 4, p 4.
const SLOT0_PARAMS_AT: usize = 14 + 16 + 8 + 4 + 2 + 4 + 1 + 2;
const SLOT0_M_AT: usize = SLOT0_PARAMS_AT + 4;

fn fix_checksum(header: &mut [u8]) {
    let n = header.len();
    let sum: [u8; 32] = Sha256::digest(&header[..n - 32]).into();
    header[n - 32..].copy_from_slice(&sum);
}

/// `header` with slot 0's Argon2 memory set to `m_kib` (the checksum fixed, the MAC not).
fn with_slot0_memory(header: &[u8], m_kib: u32) -> Vec<u8> {
    let mut out = header.to_vec();
    out[SLOT0_M_AT..SLOT0_M_AT + 4].copy_from_slice(&m_kib.to_le_bytes());
    fix_checksum(&mut out);
    out
}

#[test]
fn a_header_asking_for_4_gib_is_refused_before_any_allocation() {
    let storage = MemoryBackend::new();
    fast()
        .create_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap()
        .close()
        .unwrap();
    let header = storage.read_header().unwrap().unwrap();
    storage
        .overwrite_header(&with_slot0_memory(&header, KdfParams::MAX_M_KIB))
        .unwrap();
    match VaultOptions::new().open_with_backend(storage.clone(), &passphrase("pw")) {
        Err(Error::KdfLimit { slot, asked, limit }) => {
            assert_eq!(slot, 0);
            assert_eq!(asked.m_kib(), KdfParams::MAX_M_KIB);
            assert_eq!(limit, KdfParams::DEFAULT_LIMIT);
        }
        other => panic!("expected KdfLimit, got {other:?}"),
    }
    // The message says what was asked and what is accepted, and no secret.
    let err = VaultOptions::new()
        .open_with_backend(storage, &passphrase("pw"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("4194304 KiB") && err.contains("2097152 KiB"),
        "{err}"
    );
    assert!(!err.contains("pw\""), "{err}");
}

#[test]
fn a_slot_above_the_limit_is_skipped_and_another_slot_still_opens() {
    let storage = MemoryBackend::new();
    let vault = fast()
        .create_with_backend(storage.clone(), &passphrase("first"))
        .unwrap();
    assert_eq!(vault.add_keyslot(&passphrase("second")).unwrap(), 1);
    vault.close().unwrap();
    let header = storage.read_header().unwrap().unwrap();
    // Slot 0 now asks for 3 GiB (the MAC no longer matches, but that is only known after an
    // unlock: the derivation would run first).
    storage
        .overwrite_header(&with_slot0_memory(&header, 3 * 1024 * 1024))
        .unwrap();
    // The second passphrase still finds its slot; slot 0 is never derived. (The header's
    // MAC then reports the edit as damage: what matters is that it got there.)
    match fast().open_with_backend(storage.clone(), &passphrase("second")) {
        Err(Error::Damaged(_)) => {}
        other => panic!("expected the tampering to be reported as damage, got {other:?}"),
    }
    // The first passphrase's slot is above the limit: a typed error, not a derivation.
    assert!(matches!(
        fast().open_with_backend(storage, &passphrase("first")),
        Err(Error::KdfLimit { slot: 0, .. })
    ));
}

#[test]
fn a_lower_limit_refuses_new_slots_above_it_and_a_higher_one_accepts_them() {
    let small = KdfParams::OWASP_MINIMUM;
    // The default creation parameters (64 MiB, t = 3, p = 4) are above this limit.
    let refused = VaultOptions::new()
        .kdf_limit(small)
        .create_with_backend(MemoryBackend::new(), &passphrase("pw"));
    match refused {
        Err(Error::KdfLimit { slot, asked, limit }) => {
            assert_eq!(slot, 0);
            assert_eq!(asked, KdfParams::RFC9106_SECOND);
            assert_eq!(limit, small);
        }
        other => panic!("expected KdfLimit, got {other:?}"),
    }
    // At the limit itself: fine.
    let storage = MemoryBackend::new();
    let vault = VaultOptions::new()
        .kdf(small)
        .kdf_limit(small)
        .create_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap();
    vault.close().unwrap();
    // A handle that opens within its limit but would add a slot above it (its creation
    // parameters are the default, 64 MiB) is refused, and the header is unchanged.
    let before = storage.read_header().unwrap();
    let handle = VaultOptions::new()
        .kdf_limit(small)
        .open_with_backend(storage.clone(), &passphrase("pw"))
        .unwrap();
    assert!(matches!(
        handle.add_keyslot(&passphrase("other")),
        Err(Error::KdfLimit { slot: 1, .. })
    ));
    handle.close().unwrap();
    assert_eq!(storage.read_header().unwrap(), before);
    // A handle with a lower limit cannot open a slot made at OWASP's minimum...
    let tiny = KdfParams::insecure_for_tests();
    assert!(matches!(
        VaultOptions::new()
            .kdf_limit(tiny)
            .open_with_backend(storage.clone(), &passphrase("pw")),
        Err(Error::KdfLimit { .. })
    ));
    // ...and the default limit opens it.
    Vault::open_with_backend(storage, &passphrase("pw"))
        .unwrap()
        .close()
        .unwrap();
}
