//! Listing namespaces: a paged scan of the entries tree, so that a vault with a million
//! namespaces is listed without holding them all.

use std::fmt;

use super::Vault;
use crate::entry::{entry_clear, open_entry};
use crate::error::Result;
use crate::format::{ENTRIES_TREE, NAMESPACE_ID_LABEL, NS_ID_LEN};

/// Where a [`NamespacePage`] ended: pass it to [`Vault::namespaces_page`] for the next one.
/// Opaque (a position in storage, not a name).
#[derive(Clone, PartialEq, Eq)]
pub struct NamespaceCursor([u8; NS_ID_LEN]);

impl fmt::Debug for NamespaceCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NamespaceCursor(..)")
    }
}

/// One page of namespace names from [`Vault::namespaces_page`], in storage order (the order
/// of their hashed ids, not of their names).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespacePage {
    /// The names on this page.
    pub names: Vec<String>,
    /// Entries on this page that did not open (damaged or forged): [`Vault::verify`]
    /// reports them.
    pub damaged: usize,
    /// Where to continue, or `None` after the last page.
    pub next: Option<NamespaceCursor>,
}

impl Vault {
    /// Up to `limit` namespace names (at least 1), in storage order, starting after `cursor`
    /// (from the first when `None`). Reads only this page's entries.
    ///
    /// ```
    /// # use tokenvault::{KeySource, Token, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// for i in 0..5 {
    ///     vault.namespace(&format!("tenant-{i}"))?.put("api", &Token::new("at".into()))?;
    /// }
    /// let mut names = Vec::new();
    /// let mut cursor = None;
    /// loop {
    ///     let page = vault.namespaces_page(cursor.as_ref(), 2)?;
    ///     names.extend(page.names);
    ///     match page.next {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// names.sort();
    /// assert_eq!(names, ["tenant-0", "tenant-1", "tenant-2", "tenant-3", "tenant-4"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Backend errors; [`Error::Closed`](crate::Error::Closed).
    pub fn namespaces_page(
        &self,
        cursor: Option<&NamespaceCursor>,
        limit: usize,
    ) -> Result<NamespacePage> {
        let limit = limit.max(1);
        let after = cursor.map(|c| c.0.to_vec());
        let page = self.engine.call(|b| {
            // One more than asked for (the marker may be on the page), to know whether
            // another page follows.
            b.scan(ENTRIES_TREE, &[], after.as_deref(), limit.saturating_add(2))
        })?;
        let state = self.engine.read_state()?;
        let mut names = Vec::new();
        let mut damaged = 0;
        let mut last = None;
        let mut more = false;
        for (key, stored) in page {
            let Ok(id) = <[u8; NS_ID_LEN]>::try_from(key.as_slice()) else {
                continue; // the entry-key marker
            };
            if names.len() + damaged == limit {
                more = true;
                break;
            }
            last = Some(id);
            let opened = entry_clear(&stored).ok().and_then(|(ewk_id, _)| {
                let ewk = state.ewk(ewk_id)?;
                open_entry(&ewk.cipher, state.vault_id(), &id, &stored).ok()
            });
            match opened {
                Some(entry)
                    if state
                        .index
                        .mac(&[NAMESPACE_ID_LABEL, entry.name.as_bytes()])
                        == id =>
                {
                    names.push(entry.name.clone());
                }
                _ => damaged += 1,
            }
        }
        Ok(NamespacePage {
            names,
            damaged,
            next: if more {
                last.map(NamespaceCursor)
            } else {
                None
            },
        })
    }

    /// The names of all namespaces, sorted. A namespace exists from its first write until
    /// [`Vault::remove_namespace`], even while it holds no records. Pages through every
    /// entry; with many namespaces, [`namespaces_page`](Self::namespaces_page) lists them a
    /// page at a time. Entries that do not open are left out ([`Vault::verify`] reports
    /// them).
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) after [`Vault::close`]; backend errors.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.namespaces_page(cursor.as_ref(), 1024)?;
            names.extend(page.names);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// The names of the namespaces that hold at least one record, sorted: what Globus's
    /// `iter_namespaces` lists. Records tokenvault keeps for itself (an authorizer's refresh
    /// lease) do not count. [`Vault::namespaces`] also lists namespaces whose records
    /// were all removed.
    ///
    /// ```
    /// # use tokenvault::{KeySource, Token, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// vault.namespace("alice")?.put("rs", &Token::new("at".into()))?;
    /// let bob = vault.namespace("bob")?;
    /// bob.put("rs", &Token::new("at".into()))?;
    /// bob.remove("rs")?;
    /// assert_eq!(vault.namespaces()?, ["alice", "bob"]);
    /// assert_eq!(vault.namespaces_with_records()?, ["alice"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Damaged`](crate::Error::Damaged) if a namespace's manifest fails
    /// authentication.
    pub fn namespaces_with_records(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for name in self.namespaces()? {
            if self.namespace(&name)?.holds_records()? {
                names.push(name);
            }
        }
        Ok(names)
    }
}
