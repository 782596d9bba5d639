//! `tokenvault login`: get a token from a provider straight into the vault.

use clap::Args;
use serde::Serialize;
use tokenvault::oauth::Providers;

use crate::cli::Global;
use crate::commands::token::token_failure;
use crate::failure::{Exit, Failure, Outcome};
use crate::output;
use crate::secrets::OpenArgs;
use crate::vault::close;
use crate::when;

/// `tokenvault login`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("flow").required(true).args(["device", "browser", "client_credentials"])))]
#[command(
    long_about = "Log in with the provider NAME of NAMESPACE and store the token it gives \
                  under KEY (the provider's name unless --key says), bound to the provider, \
                  so that `tokenvault token` refreshes it there. Nothing is written anywhere \
                  but the vault.\n\n\
                  --device: the device authorization grant (RFC 8628), for a user: the URL to \
                  open and the code to enter there are printed on standard error, and the \
                  command polls the provider (at the interval it asks for, slower when it says \
                  slow_down) until the user approves, denies (exit code 8) or the code expires \
                  (exit code 8). No terminal is needed.\n\n\
                  --browser: the authorization code grant with PKCE (S256) and a loopback \
                  redirect (RFC 8252): a listener on 127.0.0.1 with a port the system picks \
                  serves one redirect, checks its state, and the code is exchanged with the \
                  PKCE verifier. The browser is started when one is available ($BROWSER, \
                  xdg-open with a display, open on macOS); the URL is printed on standard \
                  error in any case.\n\n\
                  --client-credentials: the client's own token (the client-credentials grant, \
                  RFC 6749 section 4.4), for a service; it is minted again when it expires.",
    after_help = "Examples:\n  \
                  tokenvault login alice --provider github --device\n  \
                  tokenvault login alice --provider google --browser\n  \
                  tokenvault login svc --provider idp --client-credentials --scope reports:read"
)]
pub(crate) struct LoginArgs {
    /// The namespace
    namespace: String,
    /// The provider (see `tokenvault provider ls`)
    #[arg(long, value_name = "NAME")]
    provider: String,
    /// The key to store the token under [default: the provider's name]
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// The device authorization grant (RFC 8628): shows a URL and a code to enter there
    /// from any browser, and waits for the approval
    #[arg(long, group = "flow")]
    device: bool,
    /// The authorization code grant with PKCE: opens the provider's login page in a browser
    /// (or prints its URL) and receives the redirect on 127.0.0.1
    #[arg(long, group = "flow")]
    browser: bool,
    /// With --browser: only print the URL, never start a browser
    #[arg(long, requires = "browser")]
    no_browser: bool,
    /// With --browser: how long to wait for the browser's redirect
    #[arg(long, value_name = "SECONDS", requires = "browser", default_value = "300",
          value_parser = crate::when::parse_seconds)]
    wait: std::time::Duration,
    /// The client-credentials grant: the client's own token
    #[arg(long, group = "flow")]
    client_credentials: bool,
    /// A scope to ask for instead of the provider's default scopes (repeat for several)
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct LoginJson<'a> {
    namespace: &'a str,
    key: &'a str,
    provider: &'a str,
    grant: &'static str,
    expires_at: Option<String>,
    scopes: Vec<&'a str>,
}

/// Runs `tokenvault login`.
pub(crate) fn run(global: &Global, args: &LoginArgs) -> Outcome {
    let key = args.key.as_deref().unwrap_or(&args.provider);
    let token = if args.client_credentials {
        let vault = global.open(&args.open)?;
        let result = login(&vault, args, key);
        close(vault)?;
        result?
    } else {
        interactive_login(global, args, key)?
    };
    let grant = if args.device {
        "device_code"
    } else if args.browser {
        "authorization_code"
    } else {
        "client_credentials"
    };
    let scopes: Vec<&str> = token.scopes().iter().map(String::as_str).collect();
    if global.json {
        return output::json(
            &LoginJson {
                namespace: &args.namespace,
                key,
                provider: &args.provider,
                grant,
                expires_at: token.expires_at().map(when::rfc3339),
                scopes,
            },
            0,
        );
    }
    output::text(&format!(
        "logged in with provider {}: stored token {} in namespace {}{}\n",
        output::quoted(&args.provider),
        output::quoted(key),
        output::quoted(&args.namespace),
        token
            .expires_at()
            .map(|t| format!(" (expires {})", when::rfc3339(t)))
            .unwrap_or_default()
    ))
}

/// The device and browser flows, with the vault closed while the user logs in (a directory
/// vault would stay locked for minutes otherwise): read the provider, close, run the flow,
/// open again with the same secret and store.
fn interactive_login(global: &Global, args: &LoginArgs, key: &str) -> Outcome<tokenvault::Token> {
    use tokenvault::oauth::GrantType;
    let (vault, secret) = global.open_keeping_key(&args.open, None)?;
    let provider = {
        let ns = vault.namespace(&args.namespace)?;
        let found = Providers::new(&ns).get(&args.provider);
        close(vault)?;
        found?.ok_or_else(|| no_provider(args))?
    };
    let scopes = if args.scopes.is_empty() {
        provider.scope_list().to_vec()
    } else {
        args.scopes.clone()
    };
    let refresher = provider
        .refresher(GrantType::RefreshToken)
        .map_err(|e| Failure::other(e.to_string()))?
        .scopes(scopes);
    let flow = |e: tokenvault::oauth::RefreshError| login_failure(e.into());
    let response = if args.device {
        let url = provider
            .device_authorization_url()
            .ok_or_else(|| missing(args, "device authorization", "--device-endpoint"))?;
        let mut authorization = refresher.device_authorization(url).map_err(flow)?;
        let mut shown = format!(
            "To log in, open {} and enter the code {}",
            output::escaped(authorization.verification_uri()),
            output::escaped(authorization.user_code())
        );
        if let Some(complete) = authorization.verification_uri_complete() {
            shown.push_str(&format!(" (or open {})", output::escaped(complete)));
        }
        output::note(&shown);
        output::note("Waiting for the approval...");
        refresher.poll_device(&mut authorization).map_err(flow)?
    } else {
        let url = provider
            .authorization_url()
            .ok_or_else(|| missing(args, "authorization", "--authorization-endpoint"))?;
        let login = refresher.browser_login(url).map_err(flow)?;
        let opened = !args.no_browser && open_browser(login.authorization_url());
        output::note(&format!(
            "{} {}",
            if opened {
                "A browser was started; if it did not open, open this URL:"
            } else {
                "Open this URL in a browser to log in:"
            },
            output::escaped(login.authorization_url())
        ));
        output::note("Waiting for the redirect to 127.0.0.1...");
        login.finish(&refresher, args.wait).map_err(flow)?
    };
    let vault = global.reopen(&args.open, &secret)?;
    let stored = Providers::new(&vault.namespace(&args.namespace)?).store_login(
        key,
        &args.provider,
        &response,
        GrantType::RefreshToken,
    );
    close(vault)?;
    stored.map_err(login_failure)
}

fn no_provider(args: &LoginArgs) -> Failure {
    Failure::new(
        Exit::NotFound,
        format!(
            "no provider {} in namespace {}",
            output::quoted(&args.provider),
            output::quoted(&args.namespace)
        ),
    )
    .hint("add one: tokenvault provider add NAMESPACE NAME --token-endpoint URL --client-id ID")
}

fn missing(args: &LoginArgs, what: &str, flag: &str) -> Failure {
    Failure::usage(format!(
        "provider {} has no {what} endpoint",
        output::quoted(&args.provider)
    ))
    .hint(format!(
        "add it: tokenvault provider add NAMESPACE NAME ... {flag} URL"
    ))
}

/// The client-credentials grant, with the vault open (it takes one request).
fn login(vault: &tokenvault::Vault, args: &LoginArgs, key: &str) -> Outcome<tokenvault::Token> {
    let ns = vault.namespace(&args.namespace)?;
    let providers = Providers::new(&ns);
    if providers.get(&args.provider)?.is_none() {
        return Err(no_provider(args));
    }
    let scopes = (!args.scopes.is_empty()).then_some(args.scopes.as_slice());
    providers
        .login_client_credentials(key, &args.provider, scopes)
        .map_err(login_failure)
}

/// Starts a browser on `url` if one is available: `$BROWSER`, else `open` on macOS, else
/// `xdg-open` when there is a display. The URL holds no secret (the state and the PKCE
/// challenge, not the verifier).
fn open_browser(url: &str) -> bool {
    use std::process::{Command, Stdio};
    let program = if let Some(browser) = std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        Some(browser)
    } else if cfg!(target_os = "macos") {
        Some("open".into())
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some("xdg-open".into())
    } else {
        None
    };
    program.is_some_and(|program| {
        Command::new(program)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .is_ok()
    })
}

/// A login's failure: a denial or an expired code means "log in again" (8), a transient
/// failure "temporarily unavailable" (9); a provider that lacks what the flow needs is a
/// usage error.
fn login_failure(error: tokenvault::oauth::TokenError) -> Failure {
    use tokenvault::oauth::{RefreshErrorKind, TokenError};
    match &error {
        TokenError::Refresh(e) => match (e.oauth_error(), e.kind()) {
            (Some("access_denied" | "expired_token"), _) => {
                Failure::new(Exit::Reauthenticate, error.to_string())
                    .hint("run the login again, and approve it in time")
            }
            (_, RefreshErrorKind::Transient) => Failure::new(Exit::Unavailable, error.to_string())
                .hint("the provider is temporarily unavailable: retry later"),
            _ => Failure::other(error.to_string()),
        },
        TokenError::Vault(tokenvault::Error::Provider { .. }) => Failure::usage(error.to_string())
            .hint("add what the flow needs: tokenvault provider add NAMESPACE NAME ..."),
        _ => token_failure(error),
    }
}
