//! `tokenvault info`: what a vault is made of.

use std::path::Path;

use clap::Args;
use serde::Serialize;

use crate::cli::Global;
use crate::failure::{Failure, Outcome};
use crate::keyslot_output::{describe_slot, SlotJson};
use crate::output::{self, line};
use crate::secrets::OpenArgs;
use crate::vault::close;

/// `tokenvault info`.
#[derive(Debug, Args)]
#[command(
    long_about = "Show the vault's path, on-disk format version, keyslots (kind, and Argon2id \
                  parameters for passphrase keyslots), how many namespaces and records it \
                  holds, and its size on disk (all files in the vault directory). Record \
                  counts come from the sealed manifests: no record is opened.",
    after_help = "Example:\n  tokenvault info --json"
)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    open: OpenArgs,
}

#[derive(Serialize)]
struct InfoJson {
    vault: String,
    format_version: u16,
    keyslots: Vec<SlotJson>,
    /// The keyslot whose secret opened the vault for this command.
    unlocked_keyslot: u32,
    namespaces: usize,
    namespaces_with_records: usize,
    records: u64,
    size_bytes: u64,
    files: u64,
}

/// Runs `tokenvault info`.
pub(crate) fn run(global: &Global, args: &InfoArgs) -> Outcome {
    let vault = global.open(&args.open)?;
    let location = global.location()?;
    let path = vault.path().map(Path::to_path_buf);
    let described = path
        .as_ref()
        .map_or_else(|| location.describe(), |p| p.display().to_string());
    let format_version = vault.format_version();
    let slots = vault.keyslots()?;
    let unlocked = vault.unlocked_keyslot()?;
    let names = vault.namespaces()?;
    let mut records = 0u64;
    let mut with_records = 0usize;
    for name in &names {
        let count = vault.namespace(name)?.record_count()?;
        records += count;
        with_records += usize::from(count > 0);
    }
    // Measured after closing, when everything is flushed.
    close(vault)?;
    // A vault in a database has no files to measure: 0 and 0.
    let (size_bytes, files) = match path.as_deref().or(location.dir()) {
        Some(path) => disk_usage(path)
            .map_err(|e| Failure::other(format!("cannot measure {}: {e}", path.display())))?,
        None => (0, 0),
    };
    if global.json {
        return output::json(
            &InfoJson {
                vault: described.clone(),
                format_version,
                keyslots: slots.iter().map(SlotJson::from).collect(),
                unlocked_keyslot: unlocked,
                namespaces: names.len(),
                namespaces_with_records: with_records,
                records,
                size_bytes,
                files,
            },
            0,
        );
    }
    let mut text = line("vault", output::escaped(&described));
    text.push_str(&line("format_version", format_version));
    text.push_str(&line("keyslots", slots.len()));
    for slot in &slots {
        let mark = if slot.id == unlocked {
            " (opened it)"
        } else {
            ""
        };
        text.push_str(&format!("  {}{mark}\n", describe_slot(slot)));
    }
    text.push_str(&line(
        "namespaces",
        format!("{} ({with_records} with records)", names.len()),
    ));
    text.push_str(&line("records", records));
    text.push_str(&line(
        "size_on_disk",
        format!(
            "{} ({size_bytes} bytes in {files} files)",
            human(size_bytes)
        ),
    ));
    output::text(&text)
}

/// Total size and number of the regular files under `dir` (symbolic links not followed).
fn disk_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    Ok((bytes, files))
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}
