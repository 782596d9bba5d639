//! The records a format reader found, and the checks they pass before anything is written.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::{invalid_record, ImportErrorKind};
use super::report::SkippedEntry;
use super::MAX_IMPORT_RECORDS;
use crate::error::Error;
use crate::format::MAX_NAME_LEN;
use crate::record::Record;
use crate::record::MAX_RECORD_LEN;
use crate::response::parse_json;
use crate::token::Token;
use crate::token_error::TokenError;

/// What a format reader found: the records to store and what it left out.
#[derive(Default)]
pub(crate) struct Parsed {
    pub(crate) items: Vec<Item>,
    pub(crate) skipped: Vec<SkippedEntry>,
}

/// One token to store.
pub(crate) struct Item {
    pub(crate) namespace: String,
    pub(crate) key: String,
    pub(crate) token: Token,
}

impl Parsed {
    /// Adds a record, refusing more than [`MAX_IMPORT_RECORDS`] and names the vault would
    /// refuse. The names are checked before they are copied: a hostile file can file
    /// thousands of records under one namespace name megabytes long.
    pub(super) fn push(
        &mut self,
        namespace: &str,
        key: &str,
        token: Token,
    ) -> Result<(), ImportErrorKind> {
        if self.items.len() >= MAX_IMPORT_RECORDS {
            return Err(ImportErrorKind::TooManyRecords {
                limit: MAX_IMPORT_RECORDS,
            });
        }
        check_names(namespace, key)?;
        self.items.push(Item {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            token,
        });
        Ok(())
    }
}

/// Checks what the vault would refuse, so that it is refused before anything is written:
/// duplicates and record sizes (the names were checked as the records were pushed). Returns
/// the items sorted by namespace and key.
pub(super) fn check(mut items: Vec<Item>) -> Result<Vec<Item>, ImportErrorKind> {
    items.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
    let mut seen = BTreeSet::new();
    for item in &items {
        let invalid = |reason: &str| invalid_record(&item.namespace, &item.key, reason);
        if !seen.insert((item.namespace.as_str(), item.key.as_str())) {
            return Err(invalid("the file holds this record twice"));
        }
        match item.token.encoded_len(&item.key) {
            Ok(_) => {}
            Err(Error::TooLarge { .. }) => {
                return Err(ImportErrorKind::RecordTooLarge {
                    namespace: item.namespace.clone(),
                    key: item.key.clone(),
                    limit: MAX_RECORD_LEN,
                })
            }
            Err(_) => return Err(invalid("the record cannot be encoded")),
        }
    }
    Ok(items)
}

/// Refuses the names the vault refuses: empty, longer than [`MAX_NAME_LEN`] bytes, or (a
/// key) starting with U+0000, which the vault keeps for its own records.
fn check_names(namespace: &str, key: &str) -> Result<(), ImportErrorKind> {
    let invalid = |reason: &str| Err(invalid_record(namespace, key, reason));
    for (what, name) in [("namespace", namespace), ("key", key)] {
        if name.is_empty() {
            return invalid(&format!("the {what} is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return invalid(&format!("the {what} is longer than {MAX_NAME_LEN} bytes"));
        }
    }
    if key.starts_with('\0') {
        return invalid("the key starts with U+0000, which the vault reserves for its own records");
    }
    Ok(())
}

/// Parses JSON with position-only error messages (serde_json's own may quote the input).
pub(super) fn json(bytes: &[u8]) -> Result<Value, ImportErrorKind> {
    parse_json(bytes).map_err(|e| ImportErrorKind::Malformed {
        reason: match e {
            TokenError::InvalidResponse { reason } => reason,
            _ => "not valid JSON".to_owned(),
        },
    })
}
