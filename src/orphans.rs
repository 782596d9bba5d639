//! Orphaned storage: trees that belong to no namespace the header lists.
//!
//! They come from a namespace creation or removal interrupted by a crash (their keys were
//! never stored, or were destroyed first: undecryptable), but also from a header that is
//! older than the storage (a header restored from a backup: the namespaces created since are
//! orphans to it) or from another vault's header copied over this one. The vault cannot tell
//! these apart without keys it does not have, so it never deletes an orphan by itself:
//!
//! - opening, reading and verifying never write to an orphan;
//! - creating a namespace whose storage tree still holds records first sets them aside
//!   (copied to a tree of its own, then the original is dropped), never drops them (a tree
//!   holding nothing but a manifest, as an interrupted creation leaves, counts no record
//!   and is dropped);
//! - [`Vault::verify`] counts orphans and set-aside trees, and only
//!   [`Vault::purge_orphans`] (`tokenvault purge-orphans`) drops them.

use std::collections::HashSet;

use crate::backend::Batch;
use crate::crypto::random_u64;
use crate::error::Result;
use crate::header::NS_ID_LEN;
use crate::namespace::MANIFEST_ID;
use crate::vault::Vault;

/// The name prefix of a tree holding data set aside; the orphan's tree name (its namespace
/// id) and 8 random bytes follow, so that the name is never a namespace id.
const ASIDE_PREFIX: &[u8] = b"tokenvault/set-aside/";
/// Entries copied per batch when setting a tree aside.
const PAGE: usize = 256;

impl Vault {
    /// Drops every storage tree that belongs to no namespace of this vault: the orphans and
    /// the set-aside trees that [`verify`](Self::verify) counts in
    /// [`VerifyReport::orphan_trees`](crate::VerifyReport::orphan_trees). Returns how many
    /// were dropped.
    ///
    /// Orphans are left by an interrupted namespace creation or removal (undecryptable),
    /// **or** are namespaces that a newer header (or another vault's) lists: if this vault's
    /// header file was restored from a backup, the namespaces created since then are
    /// orphans to it, and purging destroys them for good. The vault never does this by
    /// itself; call it only when no other header of this storage is to be restored.
    ///
    /// ```
    /// # use tokenvault::{KeySource, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let report = vault.verify(|_| {})?;
    /// if report.orphan_trees > 0 {
    ///     // Only once it is clear that no newer header of this vault exists anywhere:
    ///     vault.purge_orphans()?;
    /// }
    /// assert_eq!(vault.verify(|_| {})?.orphan_trees, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Backend errors (what was dropped before the error stays dropped).
    pub fn purge_orphans(&self) -> Result<usize> {
        let _maintenance = self.inner.lock_maintenance();
        let orphans = self.orphan_trees()?;
        for tree in &orphans {
            self.call(|b| b.drop_tree(tree))?;
        }
        if !orphans.is_empty() {
            self.sync_now()?;
        }
        Ok(orphans.len())
    }

    /// The trees that belong to no namespace of the header: orphaned namespace trees and
    /// set-aside trees. Other trees (not named like a namespace) are not the vault's.
    pub(crate) fn orphan_trees(&self) -> Result<Vec<Vec<u8>>> {
        let known: HashSet<[u8; NS_ID_LEN]> =
            self.read_state()?.namespaces.keys().copied().collect();
        Ok(self
            .call(|b| b.trees())?
            .into_iter()
            .filter(|t| match <[u8; NS_ID_LEN]>::try_from(t.as_slice()) {
                Ok(id) => !known.contains(&id),
                Err(_) => t.starts_with(ASIDE_PREFIX),
            })
            .collect())
    }

    /// Before namespace `id` is created: if its tree still holds records (an orphan), copies
    /// its entries to a set-aside tree, makes the copy durable, and only then drops the original.
    /// A crash midway leaves the original intact (and perhaps a partial copy, which is
    /// harmless). Called with the maintenance lock and the namespace's lock held.
    pub(crate) fn set_aside(&self, id: &[u8; NS_ID_LEN]) -> Result<()> {
        let first = self.call(|b| b.scan(id, None, 2))?;
        let holds_records = match first.as_slice() {
            [] => false,
            // Only a manifest: what a creation interrupted before its header write leaves.
            // It counts no record (a namespace's records live in the same tree).
            [(key, _)] => key.as_slice() != MANIFEST_ID,
            _ => true,
        };
        if !holds_records {
            return self.call(|b| b.drop_tree(id));
        }
        let mut aside = ASIDE_PREFIX.to_vec();
        aside.extend_from_slice(id);
        aside.extend_from_slice(&random_u64()?.to_le_bytes());
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.call(|b| b.scan(id, after.as_deref(), PAGE))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let mut batch = Batch::new();
            for (key, value) in page {
                batch = batch.write(&aside, &key, Some(value));
            }
            self.call(|b| b.apply(&batch))?;
        }
        self.sync_now()?;
        self.call(|b| b.drop_tree(id))
    }
}
