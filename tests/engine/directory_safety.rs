//! The vault directory and its own files against a planted link or file (issue 12, finding
//! 3): the header's temporary file is created exclusively, never through a link, with mode
//! 0600 set on the descriptor; the lock file and the header are never opened through a link;
//! a directory that another user owns, or that group or others can write, is refused.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use support::{fast, passphrase, raw_key, small_token};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Error, Token, Vault};

const TMP: &str = "tokenvault.header.tmp";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process just made is its effective user.
    let dir = tempfile::tempdir().unwrap();
    fs::metadata(dir.path()).unwrap().uid() == 0
}

#[test]
fn a_link_planted_as_the_header_temporary_file_is_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = fast().create(&path, &passphrase("first")).unwrap();
    // While the vault is open, someone plants a link under the temporary file's name,
    // pointing at a file they can read (or one of the victim's files).
    let target = dir.path().join("stolen-header");
    fs::write(&target, b"").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    symlink(&target, path.join(TMP)).unwrap();

    // The next header write (a new keyslot) must not copy the header there.
    vault.add_keyslot(&raw_key(9)).unwrap();
    assert_eq!(
        fs::read(&target).unwrap(),
        b"",
        "the header was written through the planted link"
    );
    assert!(!path.join(TMP).exists(), "no temporary file is left behind");
    assert_eq!(mode(&path.join("tokenvault.header")), 0o600);
    vault.close().unwrap();
    // The vault still opens with both secrets.
    Vault::open(&path, &raw_key(9)).unwrap().close().unwrap();
    fast()
        .open(&path, &passphrase("first"))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn a_world_readable_file_planted_as_the_header_temporary_file_does_not_expose_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = fast().create(&path, &passphrase("first")).unwrap();
    let planted = path.join(TMP);
    fs::write(&planted, b"planted").unwrap();
    fs::set_permissions(&planted, fs::Permissions::from_mode(0o666)).unwrap();
    // An open descriptor kept by the planter would see whatever is written to that file.
    let kept = fs::File::open(&planted).unwrap();

    vault.add_keyslot(&raw_key(9)).unwrap();
    let header = path.join("tokenvault.header");
    assert_eq!(mode(&header), 0o600, "the header is readable by others");
    // The planted file (still open by the planter) never received the header.
    use std::io::Read;
    let mut seen = Vec::new();
    (&kept).read_to_end(&mut seen).unwrap();
    assert_eq!(seen, b"planted");
    vault.close().unwrap();
}

#[test]
fn the_header_is_written_with_mode_0600_whatever_the_umask_left() {
    // A stale temporary file left by a crash, with a loose mode, is not reused.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    fs::write(path.join(TMP), b"stale").unwrap();
    fs::set_permissions(path.join(TMP), fs::Permissions::from_mode(0o644)).unwrap();
    vault.add_keyslot(&raw_key(2)).unwrap();
    assert_eq!(mode(&path.join("tokenvault.header")), 0o600);
    vault.close().unwrap();
}

#[test]
fn a_lock_file_that_is_a_link_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    Vault::create(&path, &raw_key(1)).unwrap().close().unwrap();
    fs::remove_file(path.join("tokenvault.lock")).unwrap();
    // A link to a file that does not exist yet: following it would create the file.
    let target = dir.path().join("created-through-the-link");
    symlink(&target, path.join("tokenvault.lock")).unwrap();
    match Vault::open(&path, &raw_key(1)) {
        Err(Error::UnsafePath { path: p, .. }) => assert!(p.ends_with("tokenvault.lock")),
        other => panic!("expected UnsafePath, got {other:?}"),
    }
    assert!(
        !target.exists(),
        "the lock file was opened through the link"
    );
}

#[test]
fn a_header_that_is_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    Vault::create(&path, &raw_key(1)).unwrap().close().unwrap();
    let elsewhere = dir.path().join("header-elsewhere");
    fs::rename(path.join("tokenvault.header"), &elsewhere).unwrap();
    symlink(&elsewhere, path.join("tokenvault.header")).unwrap();
    match Vault::open(&path, &raw_key(1)) {
        Err(Error::UnsafePath { path: p, .. }) => assert!(p.ends_with("tokenvault.header")),
        other => panic!("expected UnsafePath, got {other:?}"),
    }
}

#[test]
fn a_vault_directory_that_group_or_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let vault = Vault::create(&path, &raw_key(1)).unwrap();
    vault
        .namespace("n")
        .unwrap()
        .put("k", &small_token("at"))
        .unwrap();
    vault.close().unwrap();
    for loose in [0o770, 0o707, 0o777, 0o1777] {
        fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
        match Vault::open(&path, &raw_key(1)) {
            Err(Error::UnsafePath { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(reason.contains("chmod 700"), "{reason}");
            }
            other => panic!("mode {loose:o}: expected UnsafePath, got {other:?}"),
        }
    }
    // A directory only its owner can write (read access for others is their choice) opens,
    // with every record intact.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    let vault = Vault::open(&path, &raw_key(1)).unwrap();
    let token: Token = vault.namespace("n").unwrap().get("k").unwrap().unwrap();
    assert_eq!(token.access_token().expose_secret(), "at");
    vault.close().unwrap();
}

#[test]
fn a_vault_directory_owned_by_another_user_is_refused() {
    if !is_root() {
        // Only root can give a directory to another user; CI runs as root.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    Vault::create(&path, &raw_key(1)).unwrap().close().unwrap();
    // 65534: "nobody" on Debian.
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    match Vault::open(&path, &raw_key(1)) {
        Err(Error::UnsafePath { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(reason.contains("owned by user id 65534"), "{reason}");
        }
        other => panic!("expected UnsafePath, got {other:?}"),
    }
    // Creating there is refused too, and leaves the directory's mode as it was.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(path.join("tokenvault.header")).unwrap();
    assert!(matches!(
        Vault::create(&path, &raw_key(2)),
        Err(Error::UnsafePath { .. })
    ));
    assert_eq!(mode(&path), 0o755);
}
