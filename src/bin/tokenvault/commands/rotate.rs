//! `tokenvault rotate`: rotate namespaces' data keys, re-sealing their records.

use clap::Args;
use serde::Serialize;

use crate::cli::Global;
use crate::failure::Outcome;
use crate::output;
use crate::progress::Bar;
use crate::secrets::OpenArgs;
use crate::vault::{close, require_namespace};

/// `tokenvault rotate`.
#[derive(Debug, Args)]
#[command(
    long_about = "Rotate the data key of each NAMESPACE (or of every namespace with --all): a \
                  new random key becomes active at once, every record is re-sealed under it, \
                  and only then is the old key destroyed. If the command is interrupted, the \
                  next open of the vault finishes the rotation. Shows a progress bar on a \
                  terminal.",
    after_help = "Examples:\n  \
                  tokenvault rotate tenant-42\n  \
                  tokenvault rotate --all --json"
)]
pub(crate) struct RotateArgs {
    /// The namespaces whose data key to rotate
    #[arg(required_unless_present = "all")]
    namespaces: Vec<String>,
    /// Rotate every namespace
    #[arg(long, conflicts_with = "namespaces")]
    all: bool,
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct RotationsJson {
    rotated: Vec<RotatedJson>,
}

#[derive(Serialize)]
struct RotatedJson {
    namespace: String,
    key_id: u32,
    resealed: u64,
}

/// Runs `tokenvault rotate`.
pub(crate) fn run(global: &Global, args: &RotateArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let names = if args.all {
        vault.namespaces()?
    } else {
        for name in &args.namespaces {
            require_namespace(&vault, name)?;
        }
        args.namespaces.clone()
    };
    let mut rotated = Vec::new();
    for name in names {
        let bar = Bar::records(global, &format!("rotating {}", output::quoted(&name)));
        let report = vault.rotate_namespace_key(&name, |p| bar.update(p))?;
        bar.finish();
        rotated.push(RotatedJson {
            namespace: name,
            key_id: report.key_id,
            resealed: report.resealed,
        });
    }
    close(vault)?;
    if global.json {
        return output::json(&RotationsJson { rotated }, 0);
    }
    let text: String = rotated
        .iter()
        .map(|r| {
            format!(
                "rotated {}: data key {}, {} stored record{} re-sealed (its manifest included)\n",
                output::quoted(&r.namespace),
                r.key_id,
                r.resealed,
                if r.resealed == 1 { "" } else { "s" }
            )
        })
        .collect();
    output::text(&text)
}
