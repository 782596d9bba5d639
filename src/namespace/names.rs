//! Names: namespace names and record keys, and the keys reserved for tokenvault itself.

use crate::error::{Error, Result};
pub(crate) use crate::format::MAX_NAME_LEN;

pub(crate) fn validate_namespace(name: &str) -> Result<()> {
    validate_name(name, "a namespace name must not be empty")
}

pub(crate) fn validate_key(key: &str) -> Result<()> {
    validate_name(key, "a record key must not be empty")?;
    if is_reserved(key) {
        return Err(Error::InvalidName {
            reason: "record keys starting with U+0000 are reserved for tokenvault",
        });
    }
    Ok(())
}

/// Record keys starting with U+0000 are the crate's own (the authorizer's leases): refused
/// as user keys, and left out of key listings.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with('\0')
}

fn validate_name(name: &str, empty: &'static str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName { reason: empty });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidName {
            reason: "names are at most 1024 bytes",
        });
    }
    Ok(())
}
