//! Setting an orphaned tree aside before its namespace id is used again (see `crate::orphans`).

use super::Engine;
use crate::backend::Batch;
use crate::crypto::random_u64;
use crate::error::Result;
use crate::format::{ASIDE_PREFIX, NS_ID_LEN};

/// Entries copied per batch when setting a tree aside.
const PAGE: usize = 256;

impl Engine {
    /// Before namespace `id` is created: if its tree still holds anything (an orphan), copies
    /// its entries to a set-aside tree, makes the copy durable, and only then drops the
    /// original. A crash midway leaves the original intact (and perhaps a partial copy, which
    /// is harmless). Called with the maintenance lock and the namespace's lock held.
    pub(crate) fn set_aside(&self, id: &[u8; NS_ID_LEN]) -> Result<()> {
        if self.call(|b| b.scan(id, None, 1))?.is_empty() {
            // Nothing stored, or an empty tree: dropping it loses nothing.
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
