//! An in-memory backend: for tests, fuzzing and short-lived processes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Backend, BackendError, Batch, ScanPage};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// A [`Backend`] that keeps everything in memory. It stores only what the vault gives it:
/// ciphertext and hashed names.
///
/// Clones share the same storage, so a test can close a vault and open it again on a clone,
/// or inspect and damage the stored bytes through the [`Backend`] methods. Open one vault at
/// a time on it: unlike a directory, it does not lock out a second one.
///
/// ```
/// use tokenvault::{KeySource, Vault};
/// use tokenvault::backend::MemoryBackend;
/// use tokenvault::secrecy::SecretBox;
///
/// let storage = MemoryBackend::new();
/// let key = KeySource::raw_key(SecretBox::new(Box::new([42u8; 32])));
/// let vault = Vault::create_with_backend(storage.clone(), &key)?;
/// vault.close()?;
/// let vault = Vault::open_with_backend(storage, &key)?;
/// # Ok::<(), tokenvault::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    header: Option<Vec<u8>>,
    trees: BTreeMap<Vec<u8>, Tree>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch: batches are
        // applied after all checks, without calls that can panic. Keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Backend for MemoryBackend {
    fn read_header(&self) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.state().header.clone())
    }

    fn write_header(&self, expected: Option<&[u8]>, bytes: &[u8]) -> Result<bool, BackendError> {
        let mut state = self.state();
        if state.header.as_deref() != expected {
            return Ok(false);
        }
        state.header = Some(bytes.to_vec());
        Ok(true)
    }

    fn get(&self, tree: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self
            .state()
            .trees
            .get(tree)
            .and_then(|t| t.get(key))
            .cloned())
    }

    fn scan(
        &self,
        tree: &[u8],
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, BackendError> {
        let s = self.state();
        let Some(t) = s.trees.get(tree) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(k) if k >= prefix => Bound::Excluded(k.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(t.range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: &Batch) -> Result<bool, BackendError> {
        let mut s = self.state();
        for c in &batch.conditions {
            let current = s.trees.get(&c.tree).and_then(|t| t.get(&c.key));
            if current.map(Vec::as_slice) != c.expected.as_deref() {
                return Ok(false);
            }
        }
        for w in &batch.writes {
            let tree = s.trees.entry(w.tree.clone()).or_default();
            match &w.value {
                Some(v) => {
                    tree.insert(w.key.clone(), v.clone());
                }
                None => {
                    tree.remove(&w.key);
                }
            }
        }
        Ok(true)
    }

    fn drop_tree(&self, tree: &[u8]) -> Result<(), BackendError> {
        self.state().trees.remove(tree);
        Ok(())
    }

    fn trees(&self) -> Result<Vec<Vec<u8>>, BackendError> {
        Ok(self.state().trees.keys().cloned().collect())
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
