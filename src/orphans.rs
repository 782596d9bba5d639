//! Orphaned storage: what no namespace entry names.
//!
//! - **Orphaned incarnations**: records and manifests under an `ns_id || incarnation` prefix
//!   whose entry is gone or names another incarnation. A namespace removal deletes the entry
//!   and the manifest in one batch, then the records page by page; a removal that stops
//!   midway leaves such records. Incarnations are random and never reused, and the entry
//!   holding their keys is gone, so they are undecryptable garbage: [`Vault::verify`] counts
//!   them and [`Vault::purge_orphans`] removes them.
//! - **Orphaned trees**: storage trees of format version 1 (named by a namespace id) that an
//!   upgrade copied and was about to drop when it stopped. Also purged by
//!   [`Vault::purge_orphans`].
//! - **Set-aside trees**: data that format version 1 set aside when a namespace's creation
//!   found storage under its id (named `tokenvault/set-aside/` + namespace id + 8 random
//!   bytes, holding the entries unchanged). Kept until [`Vault::purge_set_aside`].

use crate::backend::Batch;
use crate::error::Result;
use crate::format::{ASIDE_PREFIX, ENTRIES_TREE, MANIFESTS_TREE, NS_ID_LEN};
use crate::vault::Vault;

impl Vault {
    /// Removes the orphaned namespace incarnations and the orphaned format-1 trees that
    /// [`verify`](Self::verify) counts in
    /// [`VerifyReport::orphans`](crate::maintenance::VerifyReport::orphans) and
    /// [`VerifyReport::orphan_trees`](crate::maintenance::VerifyReport::orphan_trees).
    /// Returns how many were removed. Set-aside trees are kept
    /// ([`purge_set_aside`](Self::purge_set_aside)).
    ///
    /// ```
    /// # use tokenvault::{KeySource, Vault};
    /// # use tokenvault::secrecy::SecretBox;
    /// # let dir = tempfile::tempdir()?;
    /// # let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let report = vault.verify(|_| {})?;
    /// if report.orphans + report.orphan_trees > 0 {
    ///     vault.purge_orphans()?;
    /// }
    /// assert_eq!(vault.verify(|_| {})?.orphans, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Backend errors (what was removed before the error stays removed).
    pub fn purge_orphans(&self) -> Result<usize> {
        let _maintenance = self.engine.lock_maintenance();
        let mut purged = 0;
        for prefix in self.orphan_prefixes()? {
            // Checked again just before: a handle elsewhere cannot create this incarnation
            // (incarnations are random), but the check costs one read.
            let still = self
                .engine
                .call(|b| b.get(ENTRIES_TREE, &prefix[..NS_ID_LEN]))?
                .and_then(|s| crate::entry::entry_clear(&s).ok())
                .is_some_and(|(_, inc)| inc[..] == prefix[NS_ID_LEN..]);
            if still {
                continue;
            }
            self.sweep(&prefix)?;
            self.engine
                .call(|b| b.apply(&Batch::new().write(MANIFESTS_TREE, &prefix, None)))?;
            purged += 1;
        }
        for tree in self.legacy_trees(false)? {
            self.engine.call(|b| b.drop_tree(&tree))?;
            purged += 1;
        }
        if purged > 0 {
            self.engine.sync_now()?;
        }
        Ok(purged)
    }

    /// Drops every set-aside tree: the data a format-1 namespace creation found under its id
    /// and set aside instead of deleting
    /// ([`VerifyReport::set_aside_trees`](crate::maintenance::VerifyReport::set_aside_trees)).
    /// Returns how many were dropped. They may hold records a restored older header could
    /// still open.
    ///
    /// # Errors
    /// Backend errors (what was dropped before the error stays dropped).
    pub fn purge_set_aside(&self) -> Result<usize> {
        let _maintenance = self.engine.lock_maintenance();
        let trees = self.legacy_trees(true)?;
        for tree in &trees {
            self.engine.call(|b| b.drop_tree(tree))?;
        }
        if !trees.is_empty() {
            self.engine.sync_now()?;
        }
        Ok(trees.len())
    }

    /// How many orphaned incarnations, orphaned format-1 trees and set-aside trees there are.
    pub(crate) fn unlisted_counts(&self) -> Result<(usize, usize, usize)> {
        Ok((
            self.orphan_prefixes()?.len(),
            self.legacy_trees(false)?.len(),
            self.legacy_trees(true)?.len(),
        ))
    }

    /// Format-1 trees: namespace trees (`set_aside == false`) or set-aside trees. Other
    /// trees (the three of format 2, anything not named like either) are not counted.
    fn legacy_trees(&self, set_aside: bool) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .engine
            .call(|b| b.trees())?
            .into_iter()
            .filter(|t| {
                if set_aside {
                    t.starts_with(ASIDE_PREFIX)
                } else {
                    t.len() == NS_ID_LEN
                }
            })
            .collect())
    }
}
