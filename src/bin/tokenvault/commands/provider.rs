//! `tokenvault provider add|ls|rm`: the OAuth providers a namespace's tokens come from.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use tokenvault::oauth::{ClientAuth, Provider, Providers};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::input::{secret, Input};
use crate::output;
use crate::secrets::OpenArgs;
use crate::terminal::prompt;
use crate::vault::close;

/// Longest client secret read.
const MAX_CLIENT_SECRET_LEN: usize = 4096;

/// `tokenvault provider ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProviderCommand {
    /// Store a provider (its endpoints and client) in a namespace, replacing one of that name
    Add(Box<ProviderAddArgs>),
    /// List a namespace's providers
    Ls(ProviderLsArgs),
    /// Remove a provider and its client secret
    Rm(ProviderRmArgs),
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuthArg {
    /// A public client: only its id is sent
    None,
    /// client_secret_basic: the id and secret in an Authorization header
    Basic,
    /// client_secret_post: the id and secret in the request body
    Post,
}

/// `tokenvault provider add`.
#[derive(Debug, Args)]
#[command(
    long_about = "Store the OAuth 2.0 provider NAME in NAMESPACE: its token endpoint, the \
                  optional device-authorization, authorization and revocation endpoints, the \
                  client id, how the client authenticates, and the default scopes. The \
                  client secret of a confidential client is read from a file, a descriptor, \
                  an environment variable named by its flag, or a no-echo prompt; never from \
                  the command line. It is sealed in the vault in a record of its own.",
    after_help = "Examples:\n  \
                  tokenvault provider add alice github --token-endpoint https://github.com/login/oauth/access_token \\\n      \
                  --device-endpoint https://github.com/login/device/code --client-id Iv1.abc --scope repo\n  \
                  tokenvault provider add svc idp --token-endpoint https://idp.example.org/token \\\n      \
                  --client-id reports --client-auth basic --client-secret-env IDP_SECRET --scope reports:read"
)]
pub(crate) struct ProviderAddArgs {
    /// The namespace
    namespace: String,
    /// The provider's name in that namespace
    name: String,
    /// The token endpoint (https, or http to 127.0.0.1 / [::1])
    #[arg(long, value_name = "URL")]
    token_endpoint: String,
    /// The device authorization endpoint (RFC 8628), for `login --device`
    #[arg(long, value_name = "URL")]
    device_endpoint: Option<String>,
    /// The authorization endpoint, for `login --browser`
    #[arg(long, value_name = "URL")]
    authorization_endpoint: Option<String>,
    /// The revocation endpoint (RFC 7009), for `logout`
    #[arg(long, value_name = "URL")]
    revocation_endpoint: Option<String>,
    /// The client id
    #[arg(long, value_name = "ID")]
    client_id: String,
    /// How the client authenticates (a secret is needed for basic and post)
    #[arg(long, value_enum, default_value = "none")]
    client_auth: AuthArg,
    /// Read the client secret from this file (less one trailing newline; mode 0600)
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "The client secret (give at most one)"
    )]
    client_secret_file: Option<PathBuf>,
    /// Read the client secret from this open file descriptor (Unix)
    #[arg(
        long,
        value_name = "N",
        help_heading = "The client secret (give at most one)"
    )]
    client_secret_fd: Option<u32>,
    /// Read the client secret from the environment variable with this NAME (not its value)
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "The client secret (give at most one)"
    )]
    client_secret_env: Option<String>,
    /// A default scope to ask for (repeat for several)
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    #[command(flatten)]
    open: OpenArgs,
}

/// `tokenvault provider ls`.
#[derive(Debug, Args)]
#[command(
    long_about = "List the providers of NAMESPACE, with their endpoints and client id \
                        (never the client secret)."
)]
pub(crate) struct ProviderLsArgs {
    /// The namespace
    namespace: String,
    #[command(flatten)]
    open: OpenArgs,
}

/// `tokenvault provider rm`.
#[derive(Debug, Args)]
#[command(
    long_about = "Remove the provider NAME from NAMESPACE, with its client secret. Tokens \
                        bound to it stay, but cannot be refreshed until a provider of that \
                        name is added again."
)]
pub(crate) struct ProviderRmArgs {
    /// The namespace
    namespace: String,
    /// The provider
    name: String,
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
pub(crate) struct ProviderJson<'a> {
    name: &'a str,
    token_endpoint: &'a str,
    device_authorization_endpoint: Option<&'a str>,
    authorization_endpoint: Option<&'a str>,
    revocation_endpoint: Option<&'a str>,
    client_id: &'a str,
    client_auth: &'static str,
    scopes: &'a [String],
}

impl<'a> ProviderJson<'a> {
    fn new(name: &'a str, provider: &'a Provider) -> Self {
        Self {
            name,
            token_endpoint: provider.token_endpoint(),
            device_authorization_endpoint: provider.device_authorization_url(),
            authorization_endpoint: provider.authorization_url(),
            revocation_endpoint: provider.revocation_url(),
            client_id: provider.client_id(),
            client_auth: match provider.client_auth() {
                Some(ClientAuth::Basic) => "basic",
                Some(ClientAuth::Post) => "post",
                _ => "none",
            },
            scopes: provider.scope_list(),
        }
    }
}

/// Runs `tokenvault provider ...`.
pub(crate) fn run(global: &Global, command: &ProviderCommand) -> Outcome {
    match command {
        ProviderCommand::Add(args) => add(global, args),
        ProviderCommand::Ls(args) => ls(global, args),
        ProviderCommand::Rm(args) => rm(global, args),
    }
}

fn add(global: &Global, args: &ProviderAddArgs) -> Outcome {
    let invalid = |e: tokenvault::oauth::RefreshError| Failure::usage(e.message().to_owned());
    let mut provider = Provider::new(&args.token_endpoint, &args.client_id).map_err(invalid)?;
    if let Some(url) = &args.device_endpoint {
        provider = provider
            .device_authorization_endpoint(url)
            .map_err(invalid)?;
    }
    if let Some(url) = &args.authorization_endpoint {
        provider = provider.authorization_endpoint(url).map_err(invalid)?;
    }
    if let Some(url) = &args.revocation_endpoint {
        provider = provider.revocation_endpoint(url).map_err(invalid)?;
    }
    provider = provider.scopes(args.scopes.iter().cloned());
    let given = [
        args.client_secret_file.clone().map(Input::PassphraseFile),
        args.client_secret_fd.map(Input::Fd),
        args.client_secret_env.clone().map(Input::Env),
    ];
    let mut given = given.into_iter().flatten();
    let source = given.next();
    if given.next().is_some() {
        return Err(Failure::usage(
            "give only one of --client-secret-file, --client-secret-fd, --client-secret-env",
        ));
    }
    if args.open.secret.reads_stdin() && args.client_secret_fd == Some(0) {
        return Err(Failure::usage(
            "the passphrase and the client secret cannot both come from standard input",
        ));
    }
    let auth = match args.client_auth {
        AuthArg::None => {
            if source.is_some() {
                return Err(Failure::usage(
                    "a client secret needs --client-auth basic or post",
                ));
            }
            None
        }
        AuthArg::Basic => Some(ClientAuth::Basic),
        AuthArg::Post => Some(ClientAuth::Post),
    };
    if let Some(auth) = auth {
        let client_secret = match source {
            Some(input) => {
                let text = input.read_text(MAX_CLIENT_SECRET_LEN, "client secret")?;
                if text.is_empty() {
                    return Err(Failure::usage("the client secret is empty"));
                }
                secret(&text)
            }
            None => prompt(
                "Client secret: ",
                false,
                "pass --client-secret-file PATH, --client-secret-fd N or --client-secret-env NAME",
            )?,
        };
        provider = provider.client_secret(client_secret, auth);
    }
    let vault = global.open(&args.open)?;
    let ns = vault.namespace(&args.namespace)?;
    Providers::new(&ns).put(&args.name, &provider)?;
    close(vault)?;
    if global.json {
        return output::json(&ProviderJson::new(&args.name, &provider), 0);
    }
    output::text(&format!(
        "stored provider {} in namespace {}\n",
        output::quoted(&args.name),
        output::quoted(&args.namespace)
    ))
}

fn ls(global: &Global, args: &ProviderLsArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let providers = Providers::new(&vault.namespace(&args.namespace)?);
    let mut found = Vec::new();
    for name in providers.names()? {
        if let Some(provider) = providers.get(&name)? {
            found.push((name, provider));
        }
    }
    close(vault)?;
    if global.json {
        let list: Vec<ProviderJson<'_>> = found
            .iter()
            .map(|(name, provider)| ProviderJson::new(name, provider))
            .collect();
        return output::json(&list, 0);
    }
    let text: String = found
        .iter()
        .map(|(name, p)| {
            format!(
                "{}: token {} client {}{}\n",
                output::escaped(name),
                output::escaped(p.token_endpoint()),
                output::escaped(p.client_id()),
                if p.client_auth().is_some() {
                    " (confidential)"
                } else {
                    ""
                }
            )
        })
        .collect();
    output::text(&text)
}

fn rm(global: &Global, args: &ProviderRmArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let removed = Providers::new(&vault.namespace(&args.namespace)?).remove(&args.name)?;
    close(vault)?;
    if !removed {
        return Err(Failure::new(
            Exit::NotFound,
            format!(
                "no provider {} in namespace {}",
                output::quoted(&args.name),
                output::quoted(&args.namespace)
            ),
        )
        .hint("list them with `tokenvault provider ls NAMESPACE`"));
    }
    output::text(&format!(
        "removed provider {}\n",
        output::quoted(&args.name)
    ))
}
