//! Orphaned storage: trees that belong to no namespace the header lists.
//!
//! They come from a namespace creation or removal interrupted by a crash (their keys were
//! never stored, or were destroyed first: undecryptable), but also from a header that is
//! older than the storage (a header restored from a backup: the namespaces created since are
//! orphans to it) or from another vault's header copied over this one. The vault cannot tell
//! these apart without keys it does not have, so it never deletes an orphan by itself:
//!
//! - opening, reading and verifying never write to an orphan;
//! - creating a namespace whose storage tree still holds anything first sets it aside
//!   (copied byte for byte to a tree of its own, then the original is dropped);
//! - [`Vault::verify`] counts orphans and set-aside trees, and only
//!   [`Vault::purge_orphans`] and [`Vault::purge_set_aside`] (`tokenvault purge-orphans`)
//!   drop them.
//!
//! A set-aside tree is named `tokenvault/set-aside/` + the namespace id + 8 random bytes and
//! holds the orphan's entries unchanged: with the header they belong to (for example a newer
//! header restored after an older one was used for a while), they can be copied back under
//! the namespace id through the [`Backend`](crate::backend::Backend) API, after setting aside what the
//! older header wrote there.

use std::collections::HashSet;

use crate::error::Result;
use crate::format::{ASIDE_PREFIX, NS_ID_LEN};
use crate::vault::Vault;

impl Vault {
    /// Drops every storage tree named like a namespace that belongs to no namespace of this
    /// vault: the orphans that [`verify`](Self::verify) counts in
    /// [`VerifyReport::orphan_trees`](crate::maintenance::VerifyReport::orphan_trees). Returns how many
    /// were dropped. Set-aside trees are kept ([`purge_set_aside`](Self::purge_set_aside)).
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
        self.purge(|kind| kind == Kind::Orphan)
    }

    /// Drops every set-aside tree: the data a namespace's creation found under its id and
    /// set aside instead of deleting ([`VerifyReport::set_aside_trees`](crate::maintenance::VerifyReport::set_aside_trees)).
    /// Returns how many were dropped. As with [`purge_orphans`](Self::purge_orphans), this
    /// destroys records a newer header could still open.
    ///
    /// # Errors
    /// Backend errors (what was dropped before the error stays dropped).
    pub fn purge_set_aside(&self) -> Result<usize> {
        self.purge(|kind| kind == Kind::SetAside)
    }

    fn purge(&self, which: impl Fn(Kind) -> bool) -> Result<usize> {
        let _maintenance = self.engine.lock_maintenance();
        let trees: Vec<Vec<u8>> = self
            .unlisted_trees()?
            .into_iter()
            .filter(|(_, kind)| which(*kind))
            .map(|(tree, _)| tree)
            .collect();
        for tree in &trees {
            self.engine.call(|b| b.drop_tree(tree))?;
        }
        if !trees.is_empty() {
            self.engine.sync_now()?;
        }
        Ok(trees.len())
    }

    /// How many orphaned and set-aside trees there are.
    pub(crate) fn unlisted_counts(&self) -> Result<(usize, usize)> {
        let trees = self.unlisted_trees()?;
        let aside = trees.iter().filter(|(_, k)| *k == Kind::SetAside).count();
        Ok((trees.len() - aside, aside))
    }

    /// The trees that belong to no namespace of the header: orphaned namespace trees and
    /// set-aside trees. Other trees (not named like either) are not the vault's.
    fn unlisted_trees(&self) -> Result<Vec<(Vec<u8>, Kind)>> {
        let known: HashSet<[u8; NS_ID_LEN]> = self
            .engine
            .read_state()?
            .namespaces
            .keys()
            .copied()
            .collect();
        Ok(self
            .engine
            .call(|b| b.trees())?
            .into_iter()
            .filter_map(|t| {
                let kind = match <[u8; NS_ID_LEN]>::try_from(t.as_slice()) {
                    Ok(id) if !known.contains(&id) => Kind::Orphan,
                    Err(_) if t.starts_with(ASIDE_PREFIX) => Kind::SetAside,
                    _ => return None,
                };
                Some((t, kind))
            })
            .collect())
    }
}

/// What a tree the header does not list is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Named like a namespace.
    Orphan,
    /// Data set aside by a namespace's creation.
    SetAside,
}
