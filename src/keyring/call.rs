//! Keyring calls with a time limit: each runs on a thread of its own, and the caller stops
//! waiting when the limit passes.

use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, KeyringFailure, Result};

/// Runs `f` on a new thread and waits at most `limit` for its answer. Past the limit the
/// caller gets [`KeyringFailure::Timeout`]; the thread is left to finish (or to hang) on
/// its own, and whatever it returns later is dropped there (a secret in it is wiped by its
/// own type).
pub(super) fn bounded<T: Send + 'static>(
    limit: Duration,
    entry: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("tokenvault-keyring".into())
        .spawn(move || {
            // The receiver may be gone (timed out): the answer is dropped here.
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        return Err(Error::Keyring {
            failure: KeyringFailure::Failed,
            entry: Some(entry.to_owned()),
            detail: format!("cannot start a thread for the call: {e}"),
        });
    }
    match rx.recv_timeout(limit) {
        Ok(answer) => answer,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Keyring {
            failure: KeyringFailure::Timeout,
            entry: Some(entry.to_owned()),
            detail: format!("no answer within {} ms", limit.as_millis()),
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Keyring {
            failure: KeyringFailure::Failed,
            entry: Some(entry.to_owned()),
            detail: "the keyring call panicked".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_hangs_is_abandoned_at_the_limit() {
        let start = std::time::Instant::now();
        let err = bounded(Duration::from_millis(50), "a@b", || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(
            err,
            Error::Keyring {
                failure: KeyringFailure::Timeout,
                ..
            }
        ));
        assert!(start.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn answers_and_panics_come_back() {
        assert_eq!(bounded(Duration::from_secs(5), "a@b", || Ok(7)).unwrap(), 7);
        let err = bounded::<()>(Duration::from_secs(5), "a@b", || panic!("boom")).unwrap_err();
        assert!(matches!(
            err,
            Error::Keyring {
                failure: KeyringFailure::Failed,
                ..
            }
        ));
    }
}
