//! Internal records: what a layer above the vault (an authorizer, a store) keeps beside a
//! caller's record, under keys no caller can write and no listing shows.

use std::fmt;

use crate::error::{Error, Result};

use super::names::{is_reserved, validate_key, MAX_NAME_LEN};

/// The key of an internal record: a record that a layer built on the vault keeps beside a
/// caller's record (an [`Authorizer`](crate::oauth::Authorizer)'s refresh lease is the
/// internal record `"lease"` of its token's key).
///
/// Internal records are sealed like any other, but
/// [`Namespace::keys`](crate::Namespace::keys),
/// [`TokenStore::token_keys`](crate::store::TokenStore::token_keys) and
/// [`Vault::namespaces_with_records`](crate::Vault::namespaces_with_records) leave them out,
/// and no caller's key can name one (keys starting with U+0000 are refused). Read one with
/// [`Namespace::get_internal`](crate::Namespace::get_internal); write or remove one in a
/// [`WriteBatch`](crate::batch::WriteBatch), alone or atomically with the caller's record it
/// belongs to. [`Namespace::record_count`](crate::Namespace::record_count) counts them
/// (format version 1 counts every stored record).
///
/// Stored as the key `"\0" + layer + "\0" + key`.
///
/// ```
/// use tokenvault::batch::InternalKey;
/// use tokenvault::{KeySource, Secret, Token, Vault};
/// use tokenvault::secrecy::SecretBox;
///
/// # let dir = tempfile::tempdir()?;
/// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
/// let ns = vault.namespace("tenant-42")?;
/// let audit = InternalKey::new("my-layer", "api")?;
/// let mut batch = vault.batch();
/// batch.put(&ns, "api", &Token::new("at".into()))?;
/// batch.put(&ns, &audit, &Secret::from_bytes(b"written by my layer".to_vec().into()))?;
/// batch.commit()?.expect("unconditional writes do not conflict");
///
/// assert_eq!(ns.keys()?, ["api"]);
/// let (mark, _version) = ns.get_internal::<Secret>(&audit)?.unwrap();
/// assert_eq!(mark.expose_bytes(), b"written by my layer");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InternalKey {
    stored: String,
    layer_len: usize,
}

impl InternalKey {
    /// The internal record `layer` of the caller's key `key`. `layer` names the layer's
    /// record (non-empty, without U+0000); `key` is a valid caller's key.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for an empty layer or one holding U+0000, an invalid `key`,
    /// or a stored key over [`MAX_NAME_LEN`](crate::format::MAX_NAME_LEN) bytes.
    pub fn new(layer: &str, key: &str) -> Result<Self> {
        if layer.is_empty() || layer.contains('\0') {
            return Err(Error::InvalidName {
                reason: "an internal record's layer is non-empty and holds no U+0000",
            });
        }
        validate_key(key)?;
        let stored = format!("\0{layer}\0{key}");
        if stored.len() > MAX_NAME_LEN {
            return Err(Error::InvalidName {
                reason: "names are at most 1024 bytes",
            });
        }
        Ok(Self {
            stored,
            layer_len: layer.len(),
        })
    }

    /// The layer's name for this record.
    pub fn layer(&self) -> &str {
        &self.stored[1..1 + self.layer_len]
    }

    /// The caller's key the record belongs to.
    pub fn key(&self) -> &str {
        &self.stored[2 + self.layer_len..]
    }

    pub(crate) fn stored(&self) -> &str {
        &self.stored
    }
}

impl fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalKey")
            .field("layer", &self.layer())
            .field("key", &self.key())
            .finish()
    }
}

/// What names a record in a [`WriteBatch`](crate::batch::WriteBatch): a caller's key (`&str`,
/// `&String`), or an [`&InternalKey`](InternalKey).
pub trait RecordKey: sealed::Sealed {
    /// The stored key, checked: a caller's key must be valid and not reserved.
    #[doc(hidden)]
    fn stored_key(&self) -> Result<&str>;
}

impl<T: AsRef<str> + ?Sized> RecordKey for &T {
    fn stored_key(&self) -> Result<&str> {
        let key = (*self).as_ref();
        validate_key(key)?;
        Ok(key)
    }
}

impl RecordKey for &InternalKey {
    fn stored_key(&self) -> Result<&str> {
        debug_assert!(is_reserved(&self.stored));
        Ok(&self.stored)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T: AsRef<str> + ?Sized> Sealed for &T {}
    impl Sealed for &super::InternalKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_key_is_stored_as_the_lease_layout_and_never_as_a_callers_key() {
        let k = InternalKey::new("lease", "api").unwrap();
        assert_eq!(k.stored(), "\0lease\0api");
        assert_eq!((k.layer(), k.key()), ("lease", "api"));
        assert!((&"\0lease\0api").stored_key().is_err());
        assert!(InternalKey::new("", "api").is_err());
        assert!(InternalKey::new("a\0b", "api").is_err());
        assert!(InternalKey::new("lease", "").is_err());
        assert!(InternalKey::new("lease", "\0x").is_err());
        assert!(InternalKey::new("lease", &"k".repeat(MAX_NAME_LEN)).is_err());
    }
}
