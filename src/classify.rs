//! [`ErrorKind::of`]: one classification for every error of the crate, whichever layer
//! returned it.

use crate::backend::BackendError;
use crate::error::{backend_kind, Error, ErrorKind};
use crate::import::ImportError;
use crate::refresh::RefreshError;
use crate::token_error::{TokenError, ValidationError};

impl ErrorKind {
    /// The kind of `error`: the first error of this crate in its
    /// [source](std::error::Error::source) chain decides ([`Error::kind`],
    /// [`TokenError::kind`], [`ImportError::error_kind`], [`RefreshError::error_kind`], a
    /// [`BackendError`]'s kind);
    /// [`Other`](ErrorKind::Other) if the chain holds none.
    ///
    /// ```
    /// use tokenvault::{ErrorKind, KeySource, Vault};
    /// use tokenvault::import::Import;
    /// use tokenvault::secrecy::SecretBox;
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([1; 32]))))?;
    /// let missing = Import::globus_json(dir.path().join("no such file")).run(&vault);
    /// let boxed: Box<dyn std::error::Error> = missing.unwrap_err().into();
    /// assert_eq!(ErrorKind::of(boxed.as_ref()), ErrorKind::Transient);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn of(error: &(dyn std::error::Error + 'static)) -> ErrorKind {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(e) = e.downcast_ref::<Error>() {
                return e.kind();
            }
            if let Some(e) = e.downcast_ref::<TokenError>() {
                return e.kind();
            }
            if let Some(e) = e.downcast_ref::<ImportError>() {
                return e.error_kind();
            }
            if let Some(e) = e.downcast_ref::<RefreshError>() {
                return e.error_kind();
            }
            if e.downcast_ref::<ValidationError>().is_some() {
                return ErrorKind::InvalidInput;
            }
            if let Some(e) = e.downcast_ref::<BackendError>() {
                return backend_kind(e.kind());
            }
            next = e.source();
        }
        ErrorKind::Other
    }
}
