//! `tokenvault import`: move the plaintext token files of other SDKs into the vault.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;
use tokenvault::import::{Import, ImportFormat, ImportReport};

use crate::cli::Global;
use crate::failure::{Exit, Failure, Outcome};
use crate::output;
use crate::progress::Bar;
use crate::secrets::OpenArgs;
use crate::vault::close;
use crate::when;

/// `tokenvault import`.
#[derive(Debug, Args)]
#[command(
    long_about = "Import a plaintext token file written by another SDK: Globus SDK JSON \
                  (JSONTokenStorage, legacy SimpleJSONFileAdapter) or SQLite \
                  (SQLiteTokenStorage, legacy SQLiteAdapter) token storage, or a Sharetribe \
                  SDK file store. The format is detected unless --format names it.\n\n\
                  All or nothing: the whole file is read and checked, every record is written \
                  in one atomic commit and read back; a record the vault already has is a \
                  conflict (exit code 7) unless --overwrite. Globus records go to a namespace \
                  named like the Globus namespace, keyed by resource server; a Sharetribe \
                  file needs --namespace and --key. --remove-source unlinks the file only \
                  after that check: unlinking is not erasing, so revoke tokens that may have \
                  been copied.",
    after_help = "Examples:\n  \
                  tokenvault import ~/.globus/app/CLIENT/APP/tokens.json --dry-run\n  \
                  tokenvault import storage.db --remove-source\n  \
                  tokenvault import file-store-token.json --namespace my-marketplace --key integration"
)]
pub(crate) struct ImportArgs {
    /// The token file to import
    file: PathBuf,
    /// The file's format [default: detected from its contents]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// For a Sharetribe file: the namespace to store its token in
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// For a Sharetribe file: the record key to store its token under
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// For a legacy Globus JSON file (format 1.0): the namespace of its records [default: DEFAULT]
    #[arg(long, value_name = "NAMESPACE")]
    legacy_namespace: Option<String>,
    /// Read and check everything and report what would be imported; write nothing
    #[arg(long)]
    dry_run: bool,
    /// Replace records the vault already has, instead of refusing the import
    #[arg(long)]
    overwrite: bool,
    /// Unlink the file once its records are stored and read back (not a secure erase)
    #[arg(long, conflicts_with = "dry_run")]
    remove_source: bool,
    /// Bind the imported tokens to this provider (it must exist in every namespace the file
    /// writes to), so that `tokenvault token` refreshes them there
    #[arg(long, value_name = "NAME", conflicts_with = "dry_run")]
    provider: Option<String>,
    #[command(flatten)]
    open: OpenArgs,
}

/// The formats `--format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Globus SDK JSON token storage (format 2.0, or legacy 1.0)
    GlobusJson,
    /// Globus SDK SQLite token storage (schema 2, or legacy 1)
    GlobusSqlite,
    /// Sharetribe SDK file store (a token response); needs --namespace and --key
    Sharetribe,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    source: String,
    format: &'static str,
    dry_run: bool,
    imported: Vec<RecordJson<'a>>,
    skipped: Vec<SkippedJson<'a>>,
    removed: Vec<String>,
    not_removed: Vec<KeptJson<'a>>,
    erasure_notice: Option<&'static str>,
}

#[derive(Serialize)]
struct RecordJson<'a> {
    namespace: &'a str,
    key: &'a str,
    resource_server: Option<&'a str>,
    identity: Option<&'a str>,
    expires_at: Option<String>,
    expires_at_unix: Option<i64>,
    replaced: bool,
}

#[derive(Serialize)]
struct SkippedJson<'a> {
    namespace: &'a str,
    key: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct KeptJson<'a> {
    path: String,
    reason: &'a str,
}

/// Runs `tokenvault import`.
pub(crate) fn run(global: &Global, args: &ImportArgs) -> Outcome {
    if !args.file.exists() {
        return Err(Failure::new(
            Exit::NotFound,
            format!("no file at {}", args.file.display()),
        )
        .hint("check the path of the token file to import"));
    }
    let format = match args.format {
        Some(format) => format,
        None => detect(args)?,
    };
    let mut import = match (format, &args.namespace, &args.key) {
        (Format::Sharetribe, Some(ns), Some(key)) => Import::sharetribe_file(&args.file, ns, key),
        (Format::Sharetribe, _, _) => {
            return Err(Failure::usage("a Sharetribe file store holds one token without a name")
                .hint("pass --namespace NAMESPACE and --key KEY to say where to store it"))
        }
        (_, Some(_), _) | (_, _, Some(_)) => {
            return Err(Failure::usage("--namespace and --key apply only to Sharetribe files")
                .hint("Globus records keep their own namespaces; a legacy Globus JSON file takes --legacy-namespace"))
        }
        (Format::GlobusJson, None, None) => Import::globus_json(&args.file),
        (Format::GlobusSqlite, None, None) => Import::globus_sqlite(&args.file),
    };
    if let Some(ns) = &args.legacy_namespace {
        import = import.namespace_for_legacy(ns);
    }
    let import = import
        .dry_run(args.dry_run)
        .overwrite(args.overwrite)
        .remove_source(args.remove_source);
    let vault = global.open(&args.open)?;
    if let Some(name) = &args.provider {
        // A dry run says which namespaces the import writes to: each needs the provider,
        // checked before anything is written.
        let planned = import.clone().dry_run(true).run(&vault);
        let missing = match planned {
            Ok(report) => first_without_provider(&vault, &report, name)?,
            Err(e) => {
                close(vault)?;
                return Err(e.into());
            }
        };
        if let Some(namespace) = missing {
            close(vault)?;
            return Err(Failure::new(
                Exit::NotFound,
                format!(
                    "no provider {} in namespace {}, where the file's tokens go",
                    output::quoted(name),
                    output::quoted(&namespace)
                ),
            )
            .hint(
                "add it first: tokenvault provider add NAMESPACE NAME --token-endpoint URL ...",
            ));
        }
    }
    let bar = Bar::spinner(
        global,
        &format!(
            "importing {}",
            output::escaped(&args.file.display().to_string())
        ),
    );
    let report = import.run(&vault);
    bar.finish();
    if let (Ok(report), Some(name)) = (&report, &args.provider) {
        for record in &report.imported {
            tokenvault::oauth::Providers::new(&vault.namespace(&record.namespace)?).bind(
                &record.key,
                name,
                tokenvault::oauth::GrantType::RefreshToken,
            )?;
        }
    }
    close(vault)?;
    let report = report?;
    if global.json {
        return output::json(&report_json(&report), 0);
    }
    // The report names stored names (already escaped by its Display) and paths: each line
    // escaped as all text output is.
    let text: String = report
        .to_string()
        .lines()
        .map(|line| format!("{}\n", output::escaped(line)))
        .collect();
    output::text(&text)
}

/// The format of the file, from its contents.
fn detect(args: &ImportArgs) -> Outcome<Format> {
    match ImportFormat::detect(&args.file) {
        Ok(ImportFormat::GlobusJson) => Ok(Format::GlobusJson),
        Ok(ImportFormat::GlobusSqlite) => Ok(Format::GlobusSqlite),
        Ok(ImportFormat::SharetribeFile) => Ok(Format::Sharetribe),
        Ok(other) => Err(Failure::other(format!("unsupported format: {other}"))),
        Err(e) => Err(e.into()),
    }
}

/// The `--format` name of a format.
fn format_name(format: ImportFormat) -> &'static str {
    match format {
        ImportFormat::GlobusJson => "globus-json",
        ImportFormat::GlobusSqlite => "globus-sqlite",
        ImportFormat::SharetribeFile => "sharetribe",
        _ => "unknown",
    }
}

fn report_json(report: &ImportReport) -> ReportJson<'_> {
    let any_removal = !report.removed.is_empty() || !report.not_removed.is_empty();
    ReportJson {
        source: report.source.display().to_string(),
        format: format_name(report.format),
        dry_run: report.dry_run,
        imported: report
            .imported
            .iter()
            .map(|r| RecordJson {
                namespace: &r.namespace,
                key: &r.key,
                resource_server: r.resource_server.as_deref(),
                identity: r.identity.as_deref(),
                expires_at: r.expires_at.map(when::rfc3339),
                expires_at_unix: r.expires_at.map(when::unix),
                replaced: r.replaced,
            })
            .collect(),
        skipped: report
            .skipped
            .iter()
            .map(|s| SkippedJson {
                namespace: &s.namespace,
                key: &s.key,
                reason: s.reason,
            })
            .collect(),
        removed: report
            .removed
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        not_removed: report
            .not_removed
            .iter()
            .map(|(p, why)| KeptJson {
                path: p.display().to_string(),
                reason: why,
            })
            .collect(),
        erasure_notice: any_removal.then_some(ImportReport::ERASURE_NOTICE),
    }
}

/// The first namespace `report` writes to that has no provider `name`.
fn first_without_provider(
    vault: &tokenvault::Vault,
    report: &ImportReport,
    name: &str,
) -> Outcome<Option<String>> {
    let mut checked: Vec<&str> = Vec::new();
    for record in &report.imported {
        if checked.contains(&record.namespace.as_str()) {
            continue;
        }
        let ns = vault.namespace(&record.namespace)?;
        if tokenvault::oauth::Providers::new(&ns).get(name)?.is_none() {
            return Ok(Some(record.namespace.clone()));
        }
        checked.push(&record.namespace);
    }
    Ok(None)
}
