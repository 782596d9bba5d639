//! The format's limits and record types: how long a name and a record may be, how many
//! keyslots a vault holds, and what a record holds ([`RecordType`]).
//!
//! Inside the crate this leaf module also holds the format's version numbers,
//! domain-separation labels and sizes, as `docs/format.md` lists them (section 2 for the
//! labels); it depends on nothing else in the crate, and the codecs (header, records, keys)
//! take their constants from here.

/// The on-disk format version of records and of the header that this library writes.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The first format version: read only to upgrade it (`crate::upgrade`).
pub(crate) const FORMAT_V1: u8 = 1;
/// The payload framing version (the byte in front of a record's bincode body).
pub(crate) const PAYLOAD_VERSION: u8 = 1;
/// The header file's first eight bytes.
pub(crate) const MAGIC: [u8; 8] = [0x89, b'T', b'V', b'A', b'U', b'L', b'T', b'\n'];

/// Bytes in the vault id.
pub(crate) const VAULT_ID_LEN: usize = 16;
/// Bytes in a namespace id (the HMAC of its name).
pub(crate) const NS_ID_LEN: usize = 32;
/// Most keyslots a vault holds.
pub const MAX_KEYSLOTS: usize = 32;
/// Largest header file read.
pub(crate) const MAX_HEADER_LEN: usize = 256 * 1024 * 1024;
/// Largest padded plaintext of one record.
pub const MAX_RECORD_LEN: usize = 64 * 1024;
/// Longest namespace name or record key, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// First `lp` field of a keyslot's AAD (section 4.3).
pub(crate) const SLOT_AAD_LABEL: &[u8] = b"tokenvault/v1/keyslot";
/// HKDF `info` of a raw-key slot's KEK (section 4.2).
pub(crate) const RAW_KEY_KEK_LABEL: &[u8] = b"tokenvault/v1/keyslot/raw-key";
/// HKDF `info` of a recovery-key slot's KEK (`docs/format.md`, section 4.2.1).
pub(crate) const RECOVERY_KEY_KEK_LABEL: &[u8] = b"tokenvault/v2/keyslot/recovery-key";
/// HKDF `info` of an OS keyring slot's KEK (`docs/format.md`, section 4.2.2).
#[cfg(feature = "keyring")]
pub(crate) const KEYRING_KEK_LABEL: &[u8] = b"tokenvault/v2/keyslot/keyring";
/// HKDF `info` of the header MAC key (section 4.4).
pub(crate) const HEADER_MAC_LABEL: &[u8] = b"tokenvault/v1/header-mac";
/// HKDF `info` of the VMK wrapping key (section 4.4).
pub(crate) const WRAP_LABEL: &[u8] = b"tokenvault/v1/wrap";
/// First `lp` field of the index key's AAD (section 4.5).
pub(crate) const INDEX_KEY_AAD_LABEL: &[u8] = b"tokenvault/v1/index-key";
/// First `lp` field of a format-1 namespace entry's AAD (section 11.3; read only to upgrade).
pub(crate) const NAMESPACE_AAD_LABEL: &[u8] = b"tokenvault/v1/namespace";
/// First `lp` part of the namespace id HMAC (section 4.6).
pub(crate) const NAMESPACE_ID_LABEL: &[u8] = b"tokenvault/v1/namespace-id";
/// First `lp` part of the record id HMAC (section 4.6).
pub(crate) const RECORD_ID_LABEL: &[u8] = b"tokenvault/v1/record-id";
/// First `lp` field of a format-1 record's AAD (section 11.4; read only to upgrade).
pub(crate) const RECORD_AAD_LABEL: &[u8] = b"tokenvault/v1/record";

/// First `lp` field of a wrapped entry-wrapping key's AAD (format v2).
pub(crate) const ENTRY_KEY_AAD_LABEL: &[u8] = b"tokenvault/v2/entry-key";
/// HKDF `info` of an entry key, and first `lp` field of a namespace entry's AAD (format v2).
pub(crate) const ENTRY_LABEL: &[u8] = b"tokenvault/v2/entry";
/// First `lp` field of a record's AAD (format v2).
pub(crate) const RECORD_V2_AAD_LABEL: &[u8] = b"tokenvault/v2/record";
/// HKDF `info` of the anchor key and first `lp` part of the anchor MAC (format v2).
pub(crate) const ANCHOR_LABEL: &[u8] = b"tokenvault/v2/anchor";
/// HKDF `info` of the first entry-wrapping key of a vault upgraded from format v1.
pub(crate) const UPGRADE_EWK_LABEL: &[u8] = b"tokenvault/v2/upgrade-ewk";
/// First `lp` part of the HMAC giving an upgraded namespace its incarnation.
pub(crate) const UPGRADE_INCARNATION_LABEL: &[u8] = b"tokenvault/v2/upgrade-incarnation";

/// The tree of namespace entries (format v2), keyed by namespace id.
pub(crate) const ENTRIES_TREE: &[u8] = b"e";
/// The tree of records (format v2), keyed by namespace id, incarnation and record id.
pub(crate) const RECORDS_TREE: &[u8] = b"r";
/// The tree of manifests (format v2), keyed by namespace id and incarnation; the anchor
/// lives under [`ANCHOR_KEY`].
pub(crate) const MANIFESTS_TREE: &[u8] = b"m";
/// The key of the entry-key marker in [`ENTRIES_TREE`] and of the anchor in
/// [`MANIFESTS_TREE`]: one byte, so never a namespace id.
pub(crate) const ANCHOR_KEY: &[u8] = &[0];
/// The key prefix, in [`MANIFESTS_TREE`], of the marks of unfinished namespace-key
/// rotations (`0x01 || ns_id`, empty value): finished when the vault next opens.
pub(crate) const PENDING_ROTATION: u8 = 1;
/// Bytes in a namespace incarnation.
pub(crate) const INCARNATION_LEN: usize = 16;

/// The name prefix of a storage tree holding data set aside; the orphan's tree name (its
/// namespace id) and 8 random bytes follow, so that the name is never a namespace id.
pub(crate) const ASIDE_PREFIX: &[u8] = b"tokenvault/set-aside/";

/// The type of a stored record, bound into its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordType {
    /// An OAuth [`Token`](crate::Token).
    Token,
    /// A [`Secret`](crate::Secret).
    Secret,
    /// A namespace manifest: tokenvault's own record (format section 5.5), never one a
    /// caller reads or writes. Not part of the public API.
    #[doc(hidden)]
    Manifest,
}

impl RecordType {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Token => 1,
            Self::Secret => 2,
            Self::Manifest => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Token),
            2 => Some(Self::Secret),
            3 => Some(Self::Manifest),
            _ => None,
        }
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Token => "token",
            Self::Secret => "secret",
            Self::Manifest => "manifest",
        })
    }
}
