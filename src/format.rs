//! The format's limits and record types: how long a name and a record may be, how many
//! keyslots a vault holds, and what a record holds ([`RecordType`]).
//!
//! Inside the crate this leaf module also holds the format's version numbers,
//! domain-separation labels and sizes, as `docs/format.md` lists them (section 2 for the
//! labels); it depends on nothing else in the crate, and the codecs (header, records, keys)
//! take their constants from here.

/// The on-disk format version of records and of the header.
pub(crate) const FORMAT_VERSION: u8 = 1;
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
/// HKDF `info` of the header MAC key (section 4.4).
pub(crate) const HEADER_MAC_LABEL: &[u8] = b"tokenvault/v1/header-mac";
/// HKDF `info` of the VMK wrapping key (section 4.4).
pub(crate) const WRAP_LABEL: &[u8] = b"tokenvault/v1/wrap";
/// First `lp` field of the index key's AAD (section 4.5).
pub(crate) const INDEX_KEY_AAD_LABEL: &[u8] = b"tokenvault/v1/index-key";
/// First `lp` field of a namespace entry's AAD (section 4.7).
pub(crate) const NAMESPACE_AAD_LABEL: &[u8] = b"tokenvault/v1/namespace";
/// First `lp` part of the namespace id HMAC (section 4.6).
pub(crate) const NAMESPACE_ID_LABEL: &[u8] = b"tokenvault/v1/namespace-id";
/// First `lp` part of the record id HMAC (section 4.6).
pub(crate) const RECORD_ID_LABEL: &[u8] = b"tokenvault/v1/record-id";
/// First `lp` field of a record's AAD (section 5.2).
pub(crate) const RECORD_AAD_LABEL: &[u8] = b"tokenvault/v1/record";

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
