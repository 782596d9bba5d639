//! `tokenvault get`: show a stored record, its secrets redacted unless a flag asks for them.

use std::time::SystemTime;

use clap::{Args, ValueEnum};
use serde::Serialize;
use tokenvault::format::{RecordType, MAX_RECORD_LEN};
use tokenvault::secrecy::ExposeSecret;
use tokenvault::{Error, Namespace, Secret, Token};
use zeroize::Zeroizing;

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::output::{self, SecretText};
use crate::secrets::OpenArgs;
use crate::vault::close;
use crate::when;

/// `tokenvault get`.
#[derive(Debug, Args)]
#[command(
    long_about = "Show the record KEY in NAMESPACE: its fields, with the access token, the \
                  refresh token and the extra response fields shown as [REDACTED]. --reveal \
                  shows them; --print-secret prints one of them alone, for use in scripts. \
                  A missing record is exit code 5. Records stored as secrets (not tokens) are \
                  shown too.",
    after_help = "Examples:\n  \
                  tokenvault get tenant-42 api.example.org\n  \
                  tokenvault get tenant-42 api.example.org --json\n  \
                  AT=$(tokenvault get tenant-42 api.example.org --print-secret access-token)"
)]
pub(crate) struct GetArgs {
    /// The namespace
    namespace: String,
    /// The record key
    key: String,
    /// Show the secrets instead of [REDACTED] (in text and in --json)
    #[arg(long, visible_alias = "show-secret")]
    reveal: bool,
    /// Print only this secret, as it is, and a newline
    #[arg(long, value_name = "FIELD", value_enum, conflicts_with = "reveal")]
    print_secret: Option<Field>,
    #[command(flatten)]
    open: OpenArgs,
}

/// A secret field that `--print-secret` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Field {
    /// The token's access token
    AccessToken,
    /// The token's refresh token
    RefreshToken,
    /// The extra fields of the token response, as JSON text (an id_token among them)
    ExtraJson,
    /// The value of a secret record (its bytes as they are; a newline only after UTF-8 text)
    Value,
}

/// Room for everything a record holds (at most [`MAX_RECORD_LEN`] bytes): output buffers
/// reserve it up front so that they never reallocate, leaving no unwiped copy of a secret.
const RECORD_ROOM: usize = MAX_RECORD_LEN;
/// The same for text output, where a binary secret doubles in hex.
const TEXT_ROOM: usize = 2 * MAX_RECORD_LEN;

/// A record of either type.
enum Stored {
    Token(Token),
    Secret(Secret),
}

#[derive(Serialize)]
struct TokenJson<'a> {
    namespace: &'a str,
    key: &'a str,
    r#type: &'static str,
    revealed: bool,
    access_token: Option<&'a str>,
    refresh_token: Option<&'a str>,
    has_refresh_token: bool,
    token_type: &'a str,
    expires_at: Option<String>,
    expires_at_unix: Option<i64>,
    expired: bool,
    scopes: &'a [String],
    identity: Option<&'a str>,
    resource_server: Option<&'a str>,
    extra_json: Option<&'a str>,
    has_extra_json: bool,
}

#[derive(Serialize)]
struct SecretJson<'a> {
    namespace: &'a str,
    key: &'a str,
    r#type: &'static str,
    revealed: bool,
    value: Option<&'a str>,
    value_encoding: Option<&'static str>,
    length: usize,
}

/// Runs `tokenvault get`.
pub(crate) fn run(global: &Global, args: &GetArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let ns = vault.namespace(&args.namespace)?;
    let stored = read(&ns, &args.key)?;
    close(vault)?;
    let Some(stored) = stored else {
        return Err(Failure::new(
            Exit::NotFound,
            format!(
                "no record {} in namespace {}",
                output::quoted(&args.key),
                output::quoted(&args.namespace)
            ),
        )
        .hint(format!(
            "list the keys with `tokenvault ls {}`",
            output::escaped(&args.namespace)
        )));
    };
    if let Some(field) = args.print_secret {
        return print_secret(&stored, field);
    }
    match &stored {
        Stored::Token(token) => show_token(global, args, token),
        Stored::Secret(secret) => show_secret(global, args, secret),
    }
}

/// Reads `key` as a token, or as a secret if it is one.
fn read(ns: &Namespace, key: &str) -> Outcome<Option<Stored>> {
    match ns.get::<Token>(key) {
        Ok(token) => Ok(token.map(Stored::Token)),
        Err(Error::WrongRecordType {
            found: RecordType::Secret,
            ..
        }) => Ok(ns.get::<Secret>(key)?.map(Stored::Secret)),
        Err(e) => Err(e.into()),
    }
}

fn show_token(global: &Global, args: &GetArgs, token: &Token) -> Outcome {
    let reveal = args.reveal;
    let now = SystemTime::now();
    let expired = token.is_expired_at(now, std::time::Duration::ZERO);
    let access = token.access_token().expose_secret();
    let refresh = token.refresh_token().map(|s| s.expose_secret());
    let extra = token.extra_json().map(|s| s.expose_secret());
    if global.json {
        let json = TokenJson {
            namespace: &args.namespace,
            key: &args.key,
            r#type: "token",
            revealed: reveal,
            access_token: reveal.then_some(access),
            refresh_token: refresh.filter(|_| reveal),
            has_refresh_token: refresh.is_some(),
            token_type: token.token_type(),
            expires_at: token.expires_at().map(when::rfc3339),
            expires_at_unix: token.expires_at().map(when::unix),
            expired,
            scopes: token.scopes(),
            identity: token.identity(),
            resource_server: token.resource_server(),
            extra_json: extra.filter(|_| reveal),
            has_extra_json: extra.is_some(),
        };
        return output::json(&json, RECORD_ROOM);
    }
    let shown = |value: Option<&str>| match value {
        Some(_) if !reveal => "[REDACTED]".to_owned(),
        Some(v) => v.to_owned(),
        None => "none".to_owned(),
    };
    let mut out = SecretText::with_room(TEXT_ROOM);
    out.line("namespace", &args.namespace);
    out.line("key", &args.key);
    out.line("type", "token");
    out.line("access_token", &Zeroizing::new(shown(Some(access))));
    out.line("refresh_token", &Zeroizing::new(shown(refresh)));
    out.line("token_type", token.token_type());
    let expiry = token.expires_at().map_or_else(
        || "never".to_owned(),
        |at| format!("{} ({})", when::rfc3339(at), when::relative(at, now)),
    );
    out.line("expires_at", &expiry);
    let scopes = token.scopes().join(" ");
    out.line("scopes", if scopes.is_empty() { "none" } else { &scopes });
    out.line("identity", token.identity().unwrap_or("none"));
    out.line("resource_server", token.resource_server().unwrap_or("none"));
    out.line("extra_json", &Zeroizing::new(shown(extra)));
    out.print()
}

fn show_secret(global: &Global, args: &GetArgs, secret: &Secret) -> Outcome {
    let bytes = secret.expose_bytes();
    let (value, encoding) = match secret.expose_text() {
        Some(text) => (Zeroizing::new(text.to_owned()), "utf-8"),
        None => (hex(bytes), "hex"),
    };
    let reveal = args.reveal;
    if global.json {
        let json = SecretJson {
            namespace: &args.namespace,
            key: &args.key,
            r#type: "secret",
            revealed: reveal,
            value: reveal.then_some(value.as_str()),
            value_encoding: reveal.then_some(encoding),
            length: bytes.len(),
        };
        return output::json(&json, RECORD_ROOM);
    }
    let mut out = SecretText::with_room(TEXT_ROOM);
    out.line("namespace", &args.namespace);
    out.line("key", &args.key);
    out.line("type", "secret");
    out.line("length", &format!("{} bytes", bytes.len()));
    if reveal {
        out.line(
            if encoding == "hex" {
                "value (hex)"
            } else {
                "value"
            },
            &value,
        );
    } else {
        out.line("value", "[REDACTED]");
    }
    out.print()
}

/// `--print-secret`: one secret alone.
fn print_secret(stored: &Stored, field: Field) -> Outcome {
    let missing = |what: &str| Failure::new(Exit::NotFound, format!("the token has no {what}"));
    let wrong = |what: &str| {
        Failure::other(format!("the record is a {what}")).hint(match what {
            "token" => "use --print-secret access-token, refresh-token or extra-json",
            _ => "use --print-secret value",
        })
    };
    let mut out = SecretText::with_room(TEXT_ROOM);
    match (stored, field) {
        (Stored::Token(t), Field::AccessToken) => out.push(t.access_token().expose_secret()),
        (Stored::Token(t), Field::RefreshToken) => {
            out.push(
                t.refresh_token()
                    .ok_or_else(|| missing("refresh token"))?
                    .expose_secret(),
            );
        }
        (Stored::Token(t), Field::ExtraJson) => {
            out.push(
                t.extra_json()
                    .ok_or_else(|| missing("extra fields"))?
                    .expose_secret(),
            );
        }
        (Stored::Token(_), Field::Value) => return Err(wrong("token")),
        (Stored::Secret(s), Field::Value) => match s.expose_text() {
            Some(text) => out.push(text),
            None => return output::raw_secret(s.expose_bytes()),
        },
        (Stored::Secret(_), _) => return Err(wrong("secret")),
    }
    out.push("\n");
    out.print()
}

/// Bytes as lowercase hex, in a wiped buffer.
fn hex(bytes: &[u8]) -> Zeroizing<String> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
