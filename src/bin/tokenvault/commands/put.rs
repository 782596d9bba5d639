//! `tokenvault put`: store a token from flags, or from an OAuth token response.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;
use serde::Serialize;
use tokenvault::format::MAX_RECORD_LEN;
use tokenvault::oauth::{TokenResponse, MAX_RESPONSE_LEN};
use tokenvault::store::TokenStore;
use tokenvault::Token;
use zeroize::Zeroizing;

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::input::{secret, Input};
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault::close;
use crate::when;

const FIELDS: &str = "Token fields (the access token is required)";
const RESPONSE: &str = "Or a token response";

/// `tokenvault put`.
#[derive(Debug, Args)]
#[command(
    long_about = "Store a token under NAMESPACE and KEY, replacing what is there (unless \
                  --if-absent).\n\n\
                  Either give the token's fields: the access token and refresh token come \
                  from a file, standard input or a named environment variable, never from a \
                  flag's value; KEY defaults to --resource-server. Or give --response-file \
                  with an OAuth 2.0 token response (RFC 6749 section 5.1) as JSON: it is \
                  merged with the stored token the way a refresh is (a response without a \
                  refresh token keeps the stored one). Without KEY, each token of the \
                  response is stored under its resource_server (Globus responses); with KEY, \
                  the response must hold one token.",
    after_help = "Examples:\n  \
                  printf %s \"$AT\" | tokenvault put tenant-42 api.example.org --access-token-stdin \\\n      \
                  --refresh-token-env RT --expires-in 3600 --scope 'openid email'\n  \
                  curl -s ... | tokenvault put tenant-42 api.example.org --response-file -\n  \
                  tokenvault put user/alice --response-file globus-login.json"
)]
pub(crate) struct PutArgs {
    /// The namespace (created by its first record)
    namespace: String,
    /// The record key [default: --resource-server, or each token's resource server]
    key: Option<String>,

    /// Read the access token from this file (`-`: standard input)
    #[arg(long, value_name = "PATH", help_heading = FIELDS)]
    access_token_file: Option<PathBuf>,
    /// Read the access token from standard input
    #[arg(long, help_heading = FIELDS)]
    access_token_stdin: bool,
    /// Read the access token from the environment variable with this NAME
    #[arg(long, value_name = "NAME", help_heading = FIELDS)]
    access_token_env: Option<String>,
    /// Read the refresh token from this file (`-`: standard input)
    #[arg(long, value_name = "PATH", help_heading = FIELDS)]
    refresh_token_file: Option<PathBuf>,
    /// Read the refresh token from standard input
    #[arg(long, help_heading = FIELDS)]
    refresh_token_stdin: bool,
    /// Read the refresh token from the environment variable with this NAME
    #[arg(long, value_name = "NAME", help_heading = FIELDS)]
    refresh_token_env: Option<String>,
    /// The token type [default: Bearer]
    #[arg(long, value_name = "TYPE", help_heading = FIELDS)]
    token_type: Option<String>,
    /// Expires this many seconds from now
    #[arg(long, value_name = "SECONDS", help_heading = FIELDS, conflicts_with = "expires_at")]
    expires_in: Option<u64>,
    /// Expires at this time: RFC 3339 (2026-01-01T00:00:00Z) or Unix seconds
    #[arg(long, value_name = "TIME", help_heading = FIELDS, value_parser = when::parse)]
    expires_at: Option<SystemTime>,
    /// A granted scope; repeat it, or separate scopes with spaces
    #[arg(long, value_name = "SCOPE", help_heading = FIELDS)]
    scope: Vec<String>,
    /// The identity the token was issued to (with --response-file: for tokens without one)
    #[arg(long, value_name = "ID", help_heading = FIELDS)]
    identity: Option<String>,
    /// The resource server the token is for
    #[arg(long, value_name = "RS", help_heading = FIELDS)]
    resource_server: Option<String>,
    /// Fail with exit code 7 if the record exists, instead of replacing it
    #[arg(long, help_heading = FIELDS)]
    if_absent: bool,

    /// Read an OAuth token response (JSON) from this file (`-`: standard input)
    #[arg(
        long,
        value_name = "PATH",
        help_heading = RESPONSE,
        conflicts_with_all = [
            "access_token_file", "access_token_stdin", "access_token_env", "refresh_token_file",
            "refresh_token_stdin", "refresh_token_env", "token_type", "expires_in", "expires_at",
            "scope", "resource_server", "if_absent",
        ]
    )]
    response_file: Option<PathBuf>,
    /// When the request for the response was sent (its expires_in counts from then)
    /// [default: now]
    #[arg(
        long,
        value_name = "TIME",
        help_heading = RESPONSE,
        requires = "response_file",
        value_parser = when::parse
    )]
    requested_at: Option<SystemTime>,

    /// Bind the stored token(s) to this provider of the namespace, so that `tokenvault
    /// token` refreshes them there (the refresh-token grant)
    #[arg(long, value_name = "NAME")]
    provider: Option<String>,

    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct PutJson<'a> {
    namespace: &'a str,
    keys: &'a [String],
}

/// Runs `tokenvault put`.
pub(crate) fn run(global: &Global, args: &PutArgs) -> Outcome {
    let access = pick(
        "access token",
        &args.access_token_file,
        args.access_token_stdin,
        &args.access_token_env,
    )?;
    let refresh = pick(
        "refresh token",
        &args.refresh_token_file,
        args.refresh_token_stdin,
        &args.refresh_token_env,
    )?;
    let response = args.response_file.as_deref().map(Input::file_or_stdin);
    let stdin_readers = [access.as_ref(), refresh.as_ref(), response.as_ref()]
        .into_iter()
        .flatten()
        .filter(|i| i.is_stdin())
        .count()
        + usize::from(args.open.secret.reads_stdin());
    if stdin_readers > 1 {
        return Err(Failure::usage(
            "only one secret can be read from standard input",
        ));
    }
    let keys = match response {
        Some(input) => {
            let vault = global.open(&args.open)?;
            let ns = vault.namespace(&args.namespace)?;
            require_provider(&ns, args.provider.as_deref())?;
            let bytes = input.read_bytes(MAX_RESPONSE_LEN, "token response")?;
            let sent = args.requested_at.unwrap_or_else(SystemTime::now);
            let mut response = TokenResponse::from_json(&bytes, sent)?;
            if let Some(identity) = &args.identity {
                response = response.with_identity(identity);
            }
            let keys = match &args.key {
                Some(key) => {
                    ns.store_response_as(key, &response)?;
                    vec![key.clone()]
                }
                None => ns.store_response(&response)?,
            };
            bind(&ns, &keys, args.provider.as_deref())?;
            close(vault)?;
            keys
        }
        None => {
            let access = access.ok_or_else(|| {
                Failure::usage("no access token given").hint(
                    "pass --access-token-file PATH, --access-token-stdin or --access-token-env NAME, or --response-file PATH",
                )
            })?;
            let key = args
                .key
                .clone()
                .or_else(|| args.resource_server.clone())
                .ok_or_else(|| {
                    Failure::usage("no record key given")
                        .hint("pass KEY after the namespace, or --resource-server")
                })?;
            let vault = global.open(&args.open)?;
            let ns = vault.namespace(&args.namespace)?;
            require_provider(&ns, args.provider.as_deref())?;
            let token = build(args, &access, refresh.as_ref())?;
            if args.if_absent {
                if ns.compare_and_swap(&key, None, &token)?.is_err() {
                    return Err(Failure::new(
                        Exit::Exists,
                        format!(
                            "namespace {} already holds a record {}",
                            output::quoted(&args.namespace),
                            output::quoted(&key)
                        ),
                    )
                    .hint("leave out --if-absent to replace it"));
                }
            } else {
                ns.put(&key, &token)?;
            }
            bind(&ns, std::slice::from_ref(&key), args.provider.as_deref())?;
            close(vault)?;
            vec![key]
        }
    };
    if global.json {
        return output::json(
            &PutJson {
                namespace: &args.namespace,
                keys: &keys,
            },
            0,
        );
    }
    let text: String = keys
        .iter()
        .map(|k| {
            format!(
                "stored {} in namespace {}\n",
                output::quoted(k),
                output::quoted(&args.namespace)
            )
        })
        .collect();
    output::text(&text)
}

/// The token the field flags describe.
fn build(args: &PutArgs, access: &Input, refresh: Option<&Input>) -> Outcome<Token> {
    let access = read_token(access, "access token")?;
    let mut token = Token::new(secret(&access));
    if let Some(refresh) = refresh {
        token = token.with_refresh_token(secret(&read_token(refresh, "refresh token")?));
    }
    if let Some(token_type) = &args.token_type {
        token = token.with_token_type(token_type.as_str());
    }
    if let Some(seconds) = args.expires_in {
        let at = SystemTime::now()
            .checked_add(Duration::from_secs(seconds))
            .ok_or_else(|| Failure::usage("--expires-in is too large"))?;
        token = token.with_expires_at(at);
    }
    if let Some(at) = args.expires_at {
        token = token.with_expires_at(at);
    }
    let scopes: Vec<&str> = args
        .scope
        .iter()
        .flat_map(|s| s.split_whitespace())
        .collect();
    if !scopes.is_empty() {
        token = token.with_scopes(scopes);
    }
    if let Some(identity) = &args.identity {
        token = token.with_identity(identity.as_str());
    }
    if let Some(rs) = &args.resource_server {
        token = token.with_resource_server(rs.as_str());
    }
    Ok(token)
}

/// A token value, less one trailing newline; never empty.
fn read_token(input: &Input, what: &str) -> Outcome<Zeroizing<String>> {
    let text = input.read_text(MAX_RECORD_LEN, what)?;
    if text.is_empty() {
        return Err(Failure::usage(format!("the {what} is empty")));
    }
    Ok(text)
}

/// The one source given for a token value, if any.
fn pick(
    what: &str,
    file: &Option<PathBuf>,
    stdin: bool,
    env: &Option<String>,
) -> Outcome<Option<Input>> {
    let given: Vec<Input> = [
        file.as_deref().map(Input::file_or_stdin),
        stdin.then_some(Input::Stdin),
        env.clone().map(Input::Env),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(Failure::usage(format!(
            "give the {what} only once (a file, standard input, or a variable)"
        )));
    }
    Ok(given.into_iter().next())
}

/// Binds `keys` to `provider`, if one was named.
fn bind(ns: &tokenvault::Namespace, keys: &[String], provider: Option<&str>) -> Outcome {
    if let Some(name) = provider {
        let providers = tokenvault::oauth::Providers::new(ns);
        for key in keys {
            providers.bind(key, name, tokenvault::oauth::GrantType::RefreshToken)?;
        }
    }
    Ok(())
}

/// Fails before anything is stored if `provider` names no provider of the namespace.
fn require_provider(ns: &tokenvault::Namespace, provider: Option<&str>) -> Outcome {
    match provider {
        Some(name) if tokenvault::oauth::Providers::new(ns).get(name)?.is_none() => {
            Err(Failure::new(
                Exit::NotFound,
                format!(
                    "no provider {} in namespace {}",
                    output::quoted(name),
                    output::quoted(ns.name())
                ),
            )
            .hint("add it first: tokenvault provider add NAMESPACE NAME --token-endpoint URL ..."))
        }
        _ => Ok(()),
    }
}
