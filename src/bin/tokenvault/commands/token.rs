//! `tokenvault token`: a valid access token on standard output, refreshed through its
//! provider when due (single-flight and leased, as the library's authorizer).

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokenvault::oauth::{Authorizer, Providers};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{ErrorKind, Token};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault::close;
use crate::when;

/// How long `token` waits for another process holding the vault, unless --lock-timeout says.
pub(crate) const TOKEN_LOCK_WAIT: Duration = Duration::from_secs(30);

/// `tokenvault token`.
#[derive(Debug, Args)]
#[command(
    long_about = "Print a valid access token for the token KEY of NAMESPACE on standard output, \
                  and nothing else: the stored one while it is fresh, else one refreshed \
                  through the provider the token is bound to (`login`, or `put --provider`). \
                  Parallel invocations refresh once: on a vault directory they take turns on \
                  its lock (waiting up to 30 s unless --lock-timeout says otherwise), and a \
                  refresh holds the authorizer's lease, as the library's does.\n\n\
                  Exit codes beyond the usual: 8 when the user must log in again (the grant is \
                  dead or revoked), 9 when the provider is temporarily unavailable (retry \
                  later).",
    after_help = "Examples:\n  \
                  curl -H \"Authorization: Bearer $(tokenvault token alice github)\" https://api.github.com/user\n  \
                  tokenvault token alice github --json\n  \
                  tokenvault token svc idp --exec-credential   # a kubectl exec credential plugin"
)]
pub(crate) struct TokenArgs {
    /// The namespace
    namespace: String,
    /// The token's key
    key: String,
    /// Print a client-go ExecCredential (kubectl's exec credential plugin protocol) instead
    #[arg(long, conflicts_with = "json")]
    exec_credential: bool,
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct TokenJson<'a> {
    access_token: &'a str,
    token_type: Option<&'a str>,
    expires_at: Option<String>,
    expires_at_unix: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential<'a> {
    api_version: String,
    kind: &'static str,
    status: ExecStatus<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecStatus<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_timestamp: Option<String>,
}

/// The ExecCredential version kubectl asks for in `KUBERNETES_EXEC_INFO`, else v1.
fn exec_api_version() -> String {
    const V1: &str = "client.authentication.k8s.io/v1";
    std::env::var("KUBERNETES_EXEC_INFO")
        .ok()
        .and_then(|info| serde_json::from_str::<serde_json::Value>(&info).ok())
        .and_then(|info| info["apiVersion"].as_str().map(str::to_owned))
        .filter(|v| v.starts_with("client.authentication.k8s.io/"))
        .unwrap_or_else(|| V1.to_owned())
}

/// Runs `tokenvault token`.
pub(crate) fn run(global: &Global, args: &TokenArgs) -> Outcome {
    let global = global.waiting_by_default(TOKEN_LOCK_WAIT);
    let vault = global.open(&args.open)?;
    let token = fetch(&vault, &args.namespace, &args.key);
    close(vault)?;
    let token = token?;
    let access = token.access_token().expose_secret();
    if args.exec_credential {
        let credential = ExecCredential {
            api_version: exec_api_version(),
            kind: "ExecCredential",
            status: ExecStatus {
                token: access,
                expiration_timestamp: token.expires_at().map(when::rfc3339),
            },
        };
        return output::json(&credential, access.len());
    }
    if global.json {
        let json = TokenJson {
            access_token: access,
            token_type: Some(token.token_type()),
            expires_at: token.expires_at().map(when::rfc3339),
            expires_at_unix: token.expires_at().map(when::unix),
        };
        return output::json(&json, access.len());
    }
    let mut out = output::SecretText::with_room(access.len() + 1);
    out.push(access);
    out.push("\n");
    out.print()
}

/// The valid token of `key`, through the authorizer and the bound provider.
fn fetch(vault: &tokenvault::Vault, namespace: &str, key: &str) -> Outcome<Token> {
    let ns = vault.namespace(namespace)?;
    let providers = Providers::new(&ns);
    let Some((name, grant)) = providers.bound(key)? else {
        if ns.get::<Token>(key)?.is_none() {
            return Err(Failure::new(
                Exit::NotFound,
                format!(
                    "no token {} in namespace {}",
                    output::quoted(key),
                    output::quoted(namespace)
                ),
            )
            .hint("log in first: tokenvault login NAMESPACE --provider NAME --key KEY"));
        }
        return Err(Failure::new(
            Exit::NotFound,
            format!(
                "the token {} is bound to no provider, so it cannot be refreshed",
                output::quoted(key)
            ),
        )
        .hint("bind it: tokenvault put NAMESPACE KEY --provider NAME ..., or log in again"));
    };
    let provider = providers.get(&name)?.ok_or_else(|| {
        Failure::new(
            Exit::NotFound,
            format!(
                "the token {} is bound to provider {}, which is gone",
                output::quoted(key),
                output::quoted(&name)
            ),
        )
        .hint("add it again: tokenvault provider add NAMESPACE NAME ...")
    })?;
    let refresher = provider
        .refresher(grant)
        .map_err(|e| Failure::other(e.to_string()))?;
    let authorizer = Authorizer::builder(&ns, key, refresher).build()?;
    authorizer.token().map_err(token_failure)
}

/// A failure to get a token, with the exit codes that tell "log in again" (8) from
/// "temporarily unavailable" (9).
pub(crate) fn token_failure(error: tokenvault::oauth::TokenError) -> Failure {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::Reauthenticate => Failure::new(Exit::Reauthenticate, message)
            .hint("log in again: tokenvault login NAMESPACE --provider NAME --key KEY"),
        ErrorKind::Transient => Failure::new(Exit::Unavailable, message)
            .hint("the provider or the storage is temporarily unavailable: retry later"),
        _ => Failure::from(error),
    }
}
