//! Key sources (passphrase, raw key, key file, recovery key) and the Argon2id policy.

#[cfg(feature = "test-hooks")]
use std::cell::Cell;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::Zeroizing;

use crate::crypto::{derive_key, Key, KEY_LEN};
use crate::error::{Error, Result};
#[cfg(feature = "keyring")]
use crate::format::KEYRING_KEK_LABEL;
use crate::format::{RAW_KEY_KEK_LABEL, RECOVERY_KEY_KEK_LABEL};
#[cfg(feature = "keyring")]
use crate::keyring::Keyring;
use crate::recovery::{RecoveryKey, RECOVERY_KEY_LEN};

/// A secret that unlocks a vault: a passphrase, a raw 32-byte key, or a key file.
///
/// Each kind unlocks only keyslots of its own kind: a passphrase is stretched with Argon2id,
/// a raw key (or the key in a key file) goes through HKDF-SHA-256. A key source that cannot
/// supply its key (an unreadable or badly protected key file) is an error; the vault never
/// falls back to another source.
///
/// ```
/// use tokenvault::KeySource;
/// use tokenvault::secrecy::{SecretBox, SecretString};
///
/// let from_passphrase = KeySource::passphrase(SecretString::from("correct horse battery staple"));
/// let from_kms = KeySource::raw_key(SecretBox::new(Box::new([7u8; 32])));
/// let from_file = KeySource::key_file("/run/credentials/app.service/vault-key");
/// # let _ = (from_passphrase, from_kms, from_file);
/// ```
pub struct KeySource(Source);

enum Source {
    Passphrase(SecretString),
    RawKey(SecretBox<[u8; KEY_LEN]>),
    KeyFile(PathBuf),
    Credential(String),
    Recovery(RecoveryKey),
    #[cfg(feature = "keyring")]
    Keyring(Keyring),
}

/// The kind of secret a keyslot accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotKind {
    /// A passphrase, stretched with Argon2id.
    Passphrase,
    /// A 32-byte key (given directly or read from a key file), through HKDF-SHA-256.
    RawKey,
    /// A [`RecoveryKey`] (128 random bits written for a human), through HKDF-SHA-256.
    RecoveryKey,
    /// A random 32-byte key kept in the OS keyring (see [`Keyring`](crate::Keyring)),
    /// through HKDF-SHA-256.
    Keyring,
    /// A kind written by a newer tokenvault; kept intact, but this version cannot use it.
    Unknown(u8),
}

impl KeySource {
    /// A passphrase. It is stretched with Argon2id using the vault's [`KdfParams`].
    ///
    /// The passphrase's UTF-8 bytes are used as given (no Unicode normalisation).
    pub fn passphrase(passphrase: SecretString) -> Self {
        Self(Source::Passphrase(passphrase))
    }

    /// A raw 256-bit key, for keys that come from a KMS, the OS, or systemd credentials.
    /// It must be uniformly random: it goes through HKDF, not through a password hash.
    pub fn raw_key(key: SecretBox<[u8; KEY_LEN]>) -> Self {
        Self(Source::RawKey(key))
    }

    /// A key file: exactly 32 raw bytes, or 64 hexadecimal characters optionally followed by
    /// one newline. The file is read when the vault uses the key, and refused (with
    /// [`Error::KeySource`]) if it is not a regular file (a FIFO or device is refused without
    /// being opened), or, on Unix, if group or others may access it or if another user than
    /// this process's effective user or root owns it.
    pub fn key_file(path: impl Into<PathBuf>) -> Self {
        Self(Source::KeyFile(path.into()))
    }

    /// A systemd credential: the key file `$CREDENTIALS_DIRECTORY/NAME` that the service
    /// manager provides to a service (`LoadCredential=NAME:/path/to/key`, or
    /// `LoadCredentialEncrypted=` for one sealed with `systemd-creds encrypt`, which systemd
    /// decrypts, with the host's TPM2 if it was sealed with it). It holds a raw key, as a
    /// [key file](Self::key_file) does, with the same checks, and unlocks raw-key keyslots.
    /// The variable and the file are read when the vault uses the key.
    ///
    /// ```
    /// use tokenvault::{KeySource, SlotKind};
    ///
    /// let key = KeySource::systemd_credential("vault-key");
    /// assert_eq!(key.kind(), SlotKind::RawKey);
    /// ```
    ///
    /// A `NAME` that is empty, `.` or `..`, or holds a `/`, and a `CREDENTIALS_DIRECTORY`
    /// that is unset or not an absolute path, are refused with [`Error::KeySource`] when the
    /// key is used, as is a missing or badly protected file.
    pub fn systemd_credential(name: impl Into<String>) -> Self {
        Self(Source::Credential(name.into()))
    }

    /// A [`RecoveryKey`]: it unlocks keyslots of kind [`SlotKind::RecoveryKey`] only.
    ///
    /// ```
    /// use tokenvault::{KeySource, RecoveryKey, SlotKind};
    ///
    /// let recovery = RecoveryKey::generate()?;
    /// assert_eq!(KeySource::recovery_key(&recovery).kind(), SlotKind::RecoveryKey);
    /// # Ok::<(), tokenvault::Error>(())
    /// ```
    pub fn recovery_key(key: &RecoveryKey) -> Self {
        Self(Source::Recovery(key.clone()))
    }

    /// The OS keyring (feature `keyring`): it unlocks keyslots of kind [`SlotKind::Keyring`],
    /// each by the slot key in the keyring entry the slot names. Given to
    /// [`Vault::create`](crate::Vault::create), [`Vault::add_keyslot`](crate::Vault::add_keyslot)
    /// or as the new secret of a keyslot change, it makes a new random slot key and writes
    /// it to a new entry, before the header that holds the slot is written (an entry whose
    /// header write fails is deleted again).
    ///
    /// ```
    /// use tokenvault::{KeySource, Keyring, SlotKind};
    ///
    /// let keyring = Keyring::platform();
    /// assert_eq!(KeySource::keyring(&keyring).kind(), SlotKind::Keyring);
    /// ```
    #[cfg(feature = "keyring")]
    pub fn keyring(keyring: &Keyring) -> Self {
        Self(Source::Keyring(keyring.clone()))
    }

    /// The keyring of a keyring source.
    #[cfg(feature = "keyring")]
    pub(crate) fn as_keyring(&self) -> Option<&Keyring> {
        match &self.0 {
            Source::Keyring(keyring) => Some(keyring),
            _ => None,
        }
    }

    /// The kind of keyslot this source unlocks.
    pub fn kind(&self) -> SlotKind {
        match self.0 {
            Source::Passphrase(_) => SlotKind::Passphrase,
            Source::RawKey(_) | Source::KeyFile(_) | Source::Credential(_) => SlotKind::RawKey,
            Source::Recovery(_) => SlotKind::RecoveryKey,
            #[cfg(feature = "keyring")]
            Source::Keyring(_) => SlotKind::Keyring,
        }
    }

    /// Resolves the source to the secret input of its keyslot's derivation.
    pub(crate) fn material(&self) -> Result<Material<'_>> {
        match &self.0 {
            Source::Passphrase(p) => {
                if p.expose_secret().is_empty() {
                    return Err(Error::KeySource {
                        reason: "the passphrase is empty".into(),
                    });
                }
                Ok(Material::Passphrase(p.expose_secret().as_bytes()))
            }
            Source::RawKey(k) => Ok(Material::Raw(
                Key::from_slice(&k.expose_secret()[..]).unwrap_or_else(Key::zero),
            )),
            Source::KeyFile(path) => read_key_file(path).map(Material::Raw),
            Source::Credential(name) => read_credential(name).map(Material::Raw),
            Source::Recovery(key) => Ok(Material::Recovery(key.bytes())),
            #[cfg(feature = "keyring")]
            Source::Keyring(keyring) => Ok(Material::Keyring(keyring)),
        }
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Passphrase(_) => f.write_str("KeySource::Passphrase([REDACTED])"),
            Source::RawKey(_) => f.write_str("KeySource::RawKey([REDACTED])"),
            Source::KeyFile(p) => write!(f, "KeySource::KeyFile({})", p.display()),
            Source::Credential(name) => write!(f, "KeySource::SystemdCredential({name:?})"),
            Source::Recovery(_) => f.write_str("KeySource::RecoveryKey([REDACTED])"),
            #[cfg(feature = "keyring")]
            Source::Keyring(keyring) => write!(f, "KeySource::Keyring({keyring:?})"),
        }
    }
}

/// The secret input of a keyslot derivation.
pub(crate) enum Material<'a> {
    Passphrase(&'a [u8]),
    Raw(Key),
    Recovery(&'a [u8; RECOVERY_KEY_LEN]),
    /// The keyring: each keyring slot's key is read from the entry it names.
    #[cfg(feature = "keyring")]
    Keyring(&'a Keyring),
}

/// Largest key file read; anything longer is not a valid key file.
const MAX_KEY_FILE_LEN: u64 = 66;

fn read_key_file(path: &Path) -> Result<Key> {
    let fail = |what: String| Error::KeySource {
        reason: format!("key file {}: {what}", path.display()),
    };
    let file = open_private_file(path).map_err(fail)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(format!("cannot read: {e}")))?;
    parse_key_file(&buf).ok_or_else(|| {
        fail("must hold exactly 32 raw bytes or 64 hex characters (and at most one newline)".into())
    })
}

/// The environment variable systemd sets to the directory of a service's credentials.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

fn read_credential(name: &str) -> Result<Key> {
    let fail = |what: String| Error::KeySource {
        reason: format!("systemd credential {name:?}: {what}"),
    };
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(fail(
            "not a credential name (empty, `.`, `..`, or holding a `/`)".into(),
        ));
    }
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY).ok_or_else(|| {
        fail(format!(
            "{CREDENTIALS_DIRECTORY} is not set: this process was not started by systemd with \
             credentials (LoadCredential= or LoadCredentialEncrypted= in its unit)"
        ))
    })?;
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() {
        return Err(fail(format!(
            "{CREDENTIALS_DIRECTORY} is not an absolute path"
        )));
    }
    let path = dir.join(name);
    if matches!(std::fs::symlink_metadata(&path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        return Err(fail(format!(
            "no such credential in {CREDENTIALS_DIRECTORY} (the unit needs \
             LoadCredential={name}:PATH or LoadCredentialEncrypted={name}:PATH)"
        )));
    }
    read_key_file(&path).map_err(|e| match e {
        Error::KeySource { reason } => fail(reason),
        other => other,
    })
}

/// Opens a file that holds a secret, refusing (with the reason) anything but a regular file
/// that only its owner can access, owned by this process's effective user or by root.
///
/// The type is checked before opening, so a FIFO or a device is never opened (opening a FIFO
/// would block until a writer comes). The open does not block either (`O_NONBLOCK`), in case
/// the path was swapped for a FIFO in between; and the opened file must be the one checked
/// (same device and inode), and pass the checks again.
pub(crate) fn open_private_file(path: &Path) -> std::result::Result<std::fs::File, String> {
    let before = std::fs::metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if !before.is_file() {
        return Err("not a regular file".into());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use rustix::fs::OFlags;
        use std::os::unix::fs::OpenOptionsExt;
        let flags = OFlags::NONBLOCK | OFlags::NOCTTY;
        options.custom_flags(i32::try_from(flags.bits()).unwrap_or(0));
    }
    let file = options
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
            return Err("it was replaced while being opened".into());
        }
        let mode = meta.mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "mode {:o} lets group or others access it; chmod 600 it",
                mode & 0o777
            ));
        }
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(format!(
                "it is owned by user id {}, not by this user ({euid}) or root; chown it",
                meta.uid()
            ));
        }
    }
    Ok(file)
}

/// Parses key-file contents: 32 raw bytes, or 64 hex digits with an optional `\n` or `\r\n`.
pub(crate) fn parse_key_file(data: &[u8]) -> Option<Key> {
    if data.len() == KEY_LEN {
        return Key::from_slice(data);
    }
    let hex = data
        .strip_suffix(b"\r\n")
        .or_else(|| data.strip_suffix(b"\n"))
        .unwrap_or(data);
    if hex.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = Key::zero();
    for (out, pair) in key.bytes_mut().iter_mut().zip(hex.chunks_exact(2)) {
        *out = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Argon2id cost parameters for passphrase keyslots.
///
/// The default is RFC 9106's second recommended option (64 MiB, t = 3, p = 4). New keyslots
/// are never created below OWASP's floor (19 MiB with t = 2) unless the parameters come from
/// [`KdfParams::insecure_for_tests`], whose name says what it is. Parameters read from a vault
/// are bounded (m ≤ 4 GiB, t ≤ 64, p ≤ 16, salt 16–64 bytes) before any derivation runs, so a
/// tampered header cannot make an unlock take hours or exhaust memory.
///
/// ```
/// use tokenvault::KdfParams;
///
/// assert_eq!(KdfParams::default(), KdfParams::RFC9106_SECOND);
/// let strong = KdfParams::new(256 * 1024, 4, 4)?; // 256 MiB, t = 4, p = 4
/// assert!(KdfParams::new(8 * 1024, 1, 1).is_err()); // below the OWASP floor
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    m_kib: u32,
    t: u32,
    p: u32,
    insecure: bool,
}

impl KdfParams {
    /// RFC 9106 section 4, second recommended option: m = 64 MiB, t = 3, p = 4. The default.
    pub const RFC9106_SECOND: Self = Self {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
        insecure: false,
    };
    /// A stronger preset for machines that can afford it: m = 256 MiB, t = 4, p = 4.
    pub const STRONG: Self = Self {
        m_kib: 256 * 1024,
        t: 4,
        p: 4,
        insecure: false,
    };
    /// OWASP's minimum for Argon2id (m = 19 MiB, t = 2, p = 1): the floor for new keyslots.
    pub const OWASP_MINIMUM: Self = Self {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
        insecure: false,
    };

    /// The default of [`VaultOptions::kdf_limit`](crate::VaultOptions::kdf_limit): the
    /// costliest derivation a vault handle runs unless told otherwise. At most 2 GiB of
    /// memory (RFC 9106's first recommendation), 16 lanes, and the work of 2 GiB with t = 4
    /// (m × t ≤ 8 GiB-passes: a few seconds to a minute, depending on the machine). The
    /// presets and RFC 9106's two recommendations are within it.
    pub const DEFAULT_LIMIT: Self = Self {
        m_kib: 2 * 1024 * 1024,
        t: 4,
        p: Self::MAX_P,
        insecure: false,
    };

    /// Largest memory cost read from disk, in KiB (4 GiB).
    pub const MAX_M_KIB: u32 = 4 * 1024 * 1024;
    /// Largest time cost read from disk.
    pub const MAX_T: u32 = 64;
    /// Largest parallelism read from disk.
    pub const MAX_P: u32 = 16;
    /// Shortest salt accepted from disk, in bytes.
    pub const MIN_SALT_LEN: usize = 16;
    /// Longest salt accepted from disk, in bytes.
    pub const MAX_SALT_LEN: usize = 64;

    /// Custom parameters: memory in KiB, passes, lanes. Refused below the OWASP floor
    /// (m < 19 MiB or t < 2) or above the bounds this library will run.
    ///
    /// # Errors
    /// [`Error::KdfParams`] naming the violated bound.
    pub fn new(m_kib: u32, t: u32, p: u32) -> Result<Self> {
        let params = Self {
            m_kib,
            t,
            p,
            insecure: false,
        };
        params.check_bounds()?;
        if m_kib < Self::OWASP_MINIMUM.m_kib || t < Self::OWASP_MINIMUM.t {
            return Err(Error::KdfParams {
                reason: format!(
                    "m = {m_kib} KiB, t = {t} is below the OWASP floor (m >= 19456 KiB, t >= 2)"
                ),
            });
        }
        Ok(params)
    }

    /// **Insecure**: tiny parameters (m = 64 KiB, t = 1, p = 1) that make tests fast.
    ///
    /// # Security
    /// A passphrase protected with these parameters can be guessed at millions of tries per
    /// second. Use them only in tests; every other constructor enforces the OWASP floor.
    pub const fn insecure_for_tests() -> Self {
        Self {
            m_kib: 64,
            t: 1,
            p: 1,
            insecure: true,
        }
    }

    /// Memory cost in KiB.
    pub fn m_kib(&self) -> u32 {
        self.m_kib
    }

    /// Time cost (passes over memory).
    pub fn t(&self) -> u32 {
        self.t
    }

    /// Parallelism (lanes).
    pub fn p(&self) -> u32 {
        self.p
    }

    /// Whether these parameters are below the OWASP floor: the
    /// [`insecure_for_tests`](Self::insecure_for_tests) preset, or a slot written with it.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Parameters as read from disk: bounded, but not held to the creation floor (parameters
    /// below it are marked insecure).
    pub(crate) fn from_disk(m_kib: u32, t: u32, p: u32) -> Option<Self> {
        let params = Self {
            m_kib,
            t,
            p,
            insecure: m_kib < Self::OWASP_MINIMUM.m_kib || t < Self::OWASP_MINIMUM.t,
        };
        params.check_bounds().ok().map(|()| params)
    }

    /// Whether `self` costs more than `limit` allows: more memory, more lanes, or more work
    /// (memory × passes) than the limit's own.
    pub(crate) fn exceeds(&self, limit: &Self) -> bool {
        let work = |p: &Self| u64::from(p.m_kib) * u64::from(p.t);
        self.m_kib > limit.m_kib || self.p > limit.p || work(self) > work(limit)
    }

    /// Whether `self` is weaker than `policy` in memory or time.
    pub(crate) fn weaker_than(&self, policy: &Self) -> bool {
        self.m_kib < policy.m_kib || self.t < policy.t
    }

    fn check_bounds(&self) -> Result<()> {
        let fail = |reason: String| Err(Error::KdfParams { reason });
        if self.t == 0 || self.t > Self::MAX_T {
            return fail(format!("t = {} is outside 1..={}", self.t, Self::MAX_T));
        }
        if self.p == 0 || self.p > Self::MAX_P {
            return fail(format!("p = {} is outside 1..={}", self.p, Self::MAX_P));
        }
        if self.m_kib < 8 * self.p || self.m_kib > Self::MAX_M_KIB {
            return fail(format!(
                "m = {} KiB is outside {}..={} KiB",
                self.m_kib,
                8 * self.p,
                Self::MAX_M_KIB
            ));
        }
        Ok(())
    }

    /// `Argon2id(v = 0x13, m, t, p, password, salt) -> 32 bytes`, with working memory that is
    /// allocated fallibly and wiped afterwards.
    pub(crate) fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Key> {
        #[cfg(feature = "test-hooks")]
        count_kdf_run();
        let params = Params::new(self.m_kib, self.t, self.p, Some(KEY_LEN)).map_err(|e| {
            Error::KdfParams {
                reason: e.to_string(),
            }
        })?;
        let blocks = params.block_count();
        let mut memory: Zeroizing<Vec<Block>> = Zeroizing::new(Vec::new());
        memory
            .try_reserve_exact(blocks)
            .map_err(|_| Error::KdfParams {
                reason: format!("cannot allocate {} KiB for Argon2", self.m_kib),
            })?;
        memory.resize(blocks, Block::default());
        let mut key = Key::zero();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(password, salt, key.bytes_mut(), &mut memory[..])
            .map_err(|e| Error::KdfParams {
                reason: e.to_string(),
            })?;
        Ok(key)
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::RFC9106_SECOND
    }
}

impl fmt::Debug for KdfParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KdfParams")
            .field("m_kib", &self.m_kib)
            .field("t", &self.t)
            .field("p", &self.p)
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// The KEK of a raw-key slot: `HKDF-SHA-256(salt = slot salt, ikm = key, info = label)`.
pub(crate) fn raw_key_kek(key: &Key, salt: &[u8]) -> Result<Key> {
    derive_key(salt, key.bytes(), RAW_KEY_KEK_LABEL)
}

/// A recovery-key slot's KEK (`docs/format.md`, section 4.2.1).
pub(crate) fn recovery_key_kek(key: &[u8; RECOVERY_KEY_LEN], salt: &[u8]) -> Result<Key> {
    derive_key(salt, key, RECOVERY_KEY_KEK_LABEL)
}

/// A keyring slot's KEK (`docs/format.md`, section 4.2.2).
#[cfg(feature = "keyring")]
pub(crate) fn keyring_kek(key: &Key, salt: &[u8]) -> Result<Key> {
    derive_key(salt, key.bytes(), KEYRING_KEK_LABEL)
}

#[cfg(feature = "test-hooks")]
thread_local! {
    static KDF_RUNS: Cell<u64> = const { Cell::new(0) };
}

/// Counts an Argon2 derivation on this thread.
#[cfg(feature = "test-hooks")]
fn count_kdf_run() {
    KDF_RUNS.with(|c| c.set(c.get() + 1));
}

/// How many Argon2 derivations this thread has run (for tests of the one-KDF-per-slot rule).
#[cfg(feature = "test-hooks")]
pub(crate) fn kdf_runs_on_this_thread() -> u64 {
    KDF_RUNS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_formats() {
        let raw = [9u8; 32];
        assert_eq!(parse_key_file(&raw).unwrap().bytes(), &raw);
        let hex = "09".repeat(32);
        assert_eq!(parse_key_file(hex.as_bytes()).unwrap().bytes(), &raw);
        assert!(parse_key_file(format!("{hex}\n").as_bytes()).is_some());
        assert!(parse_key_file(format!("{hex}\r\n").as_bytes()).is_some());
        assert!(parse_key_file(format!("{hex}\n\n").as_bytes()).is_none());
        assert!(parse_key_file(&hex.as_bytes()[..63]).is_none());
        assert!(parse_key_file("zz".repeat(32).as_bytes()).is_none());
        assert!(parse_key_file(&[1u8; 31]).is_none());
        assert!(parse_key_file(b"").is_none());
    }

    #[test]
    fn argon2id_matches_rfc9106_shape() {
        // Deterministic for fixed inputs, sensitive to every input.
        let p = KdfParams::insecure_for_tests();
        let a = p.derive(b"password", &[1u8; 16]).unwrap();
        let b = p.derive(b"password", &[1u8; 16]).unwrap();
        let c = p.derive(b"passwore", &[1u8; 16]).unwrap();
        let d = p.derive(b"password", &[2u8; 16]).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        assert_ne!(a.bytes(), c.bytes());
        assert_ne!(a.bytes(), d.bytes());
    }

    #[test]
    fn bounds() {
        assert!(KdfParams::from_disk(KdfParams::MAX_M_KIB + 1, 1, 1).is_none());
        assert!(KdfParams::from_disk(64, 65, 1).is_none());
        assert!(KdfParams::from_disk(64, 1, 17).is_none());
        assert!(KdfParams::from_disk(64, 0, 1).is_none());
        assert!(KdfParams::from_disk(7, 1, 1).is_none());
        assert!(KdfParams::from_disk(64, 1, 1).is_some());
        assert!(KdfParams::new(19 * 1024, 2, 1).is_ok());
        assert!(KdfParams::new(19 * 1024 - 1, 2, 1).is_err());
        assert!(KdfParams::new(64 * 1024, 1, 1).is_err());
    }
}
