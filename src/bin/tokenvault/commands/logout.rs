//! `tokenvault logout`: remove a token locally, then revoke it at its provider.

use clap::Args;
use serde::Serialize;
use tokenvault::oauth::{Authorizer, Providers, RefreshError};
use tokenvault::Token;

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault::close;

/// `tokenvault logout`.
#[derive(Debug, Args)]
#[command(
    long_about = "Log out: remove the token KEY of NAMESPACE (and its binding) from the vault \
                  first, then revoke it at the provider it is bound to (RFC 7009: the refresh \
                  token if there is one, else the access token), and report the result. The \
                  local token is gone even if the revocation fails (exit code 9 then, or 1 if \
                  the provider refused)."
)]
pub(crate) struct LogoutArgs {
    /// The namespace
    namespace: String,
    /// The token's key
    key: String,
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct LogoutJson<'a> {
    namespace: &'a str,
    key: &'a str,
    removed: bool,
    /// `revoked`, `not_supported` (the provider has no revocation endpoint), `no_provider`,
    /// or `failed`.
    revocation: &'static str,
    revocation_error: Option<String>,
}

/// Runs `tokenvault logout`.
pub(crate) fn run(global: &Global, args: &LogoutArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let result = logout(&vault, args);
    close(vault)?;
    let (removed, revocation) = result?;
    let (status, error) = match &revocation {
        Revocation::Revoked => ("revoked", None),
        Revocation::NotSupported => ("not_supported", None),
        Revocation::NoProvider => ("no_provider", None),
        Revocation::Failed(e) => ("failed", Some(e.to_string())),
    };
    if !removed {
        return Err(Failure::new(
            Exit::NotFound,
            format!(
                "no token {} in namespace {}",
                output::quoted(&args.key),
                output::quoted(&args.namespace)
            ),
        ));
    }
    if global.json {
        output::json(
            &LogoutJson {
                namespace: &args.namespace,
                key: &args.key,
                removed,
                revocation: status,
                revocation_error: error.clone(),
            },
            0,
        )?;
    } else {
        let said = match &revocation {
            Revocation::Revoked => "and revoked it at its provider".to_owned(),
            Revocation::NotSupported => {
                "(its provider has no revocation endpoint: the grant stays valid there)".to_owned()
            }
            Revocation::NoProvider => "(bound to no provider: nothing was revoked)".to_owned(),
            Revocation::Failed(_) => "but revoking it failed".to_owned(),
        };
        output::text(&format!(
            "removed token {} from namespace {} {said}\n",
            output::quoted(&args.key),
            output::quoted(&args.namespace)
        ))?;
    }
    match revocation {
        Revocation::Failed(e) => {
            let exit = if e.kind() == tokenvault::oauth::RefreshErrorKind::Transient {
                Exit::Unavailable
            } else {
                Exit::Other
            };
            Err(Failure::new(exit, format!("the revocation failed: {e}"))
                .hint("the token is removed here; revoke the grant in the provider's settings"))
        }
        _ => Ok(()),
    }
}

enum Revocation {
    Revoked,
    NotSupported,
    NoProvider,
    Failed(RefreshError),
}

fn logout(vault: &tokenvault::Vault, args: &LogoutArgs) -> Outcome<(bool, Revocation)> {
    let ns = vault.namespace(&args.namespace)?;
    let providers = Providers::new(&ns);
    let provider = match providers.bound(&args.key)? {
        Some((name, grant)) => providers.get(&name)?.map(|p| (p, grant)),
        None => None,
    };
    let refresher = match &provider {
        Some((provider, grant)) => Some(
            provider
                .refresher(*grant)
                .map_err(|e| Failure::other(e.to_string()))?,
        ),
        None => None,
    };
    let never = |_: Option<&Token>| -> Result<Token, RefreshError> {
        Err(RefreshError::rejected("logging out"))
    };
    let authorizer = Authorizer::builder(&ns, &args.key, never).build()?;
    let mut outcome = Revocation::NoProvider;
    let report = authorizer.logout(|token: Token| {
        match &refresher {
            None => {}
            Some(r) if r.revocation_endpoint().is_none() => outcome = Revocation::NotSupported,
            Some(r) => {
                r.revoke(&token)?;
                outcome = Revocation::Revoked;
            }
        }
        Ok::<(), RefreshError>(())
    })?;
    providers.unbind(&args.key)?;
    let revocation = match report.revocation {
        Some(Err(e)) => Revocation::Failed(e),
        _ => outcome,
    };
    Ok((report.removed, revocation))
}
