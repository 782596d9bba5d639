//! Passphrase hashing on the command line: `--kdf COST` for the keyslots a command writes,
//! and `--max-kdf-mib MIB` for the keyslots it will unlock. Both are parsed by clap, so a bad
//! value is a usage error (exit code 2) before anything is done.

use clap::{Args, ValueEnum};
use tokenvault::KdfParams;

/// Argon2id cost of the passphrase keyslots a command writes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Passphrase hashing")]
pub(crate) struct KdfArgs {
    /// Argon2id cost of a new passphrase keyslot: `default` (64 MiB, t=3, p=4), `strong`
    /// (256 MiB, t=4, p=4), `owasp-minimum` (19 MiB, t=2, p=1), or `m=MIB,t=N,p=N`
    #[arg(long, value_name = "COST", default_value = "default", value_parser = parse_cost)]
    kdf: KdfParams,
    /// INSECURE, for tests only: Argon2 with 64 KiB and t=1, so a passphrase can be guessed
    /// millions of times per second. Never use it for a real vault
    #[arg(long, hide = true)]
    insecure_fast_kdf: bool,
}

/// The named costs of `--kdf`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// RFC 9106's second recommendation: 64 MiB, t=3, p=4.
    Default,
    /// 256 MiB, t=4, p=4.
    Strong,
    /// 19 MiB, t=2, p=1.
    OwaspMinimum,
}

impl KdfArgs {
    /// The parameters these flags ask for.
    pub(crate) fn params(&self) -> KdfParams {
        if self.insecure_fast_kdf {
            KdfParams::insecure_for_tests()
        } else {
            self.kdf
        }
    }
}

impl Preset {
    fn params(self) -> KdfParams {
        match self {
            Self::Default => KdfParams::RFC9106_SECOND,
            Self::Strong => KdfParams::STRONG,
            Self::OwaspMinimum => KdfParams::OWASP_MINIMUM,
        }
    }
}

/// Parses `--kdf`: a preset's name, or `m=MIB,t=N,p=N` (refused below the OWASP floor).
fn parse_cost(text: &str) -> Result<KdfParams, String> {
    if let Ok(preset) = Preset::from_str(text, false) {
        return Ok(preset.params());
    }
    let bad = || {
        "not a known cost: use default, strong, owasp-minimum, or m=MIB,t=N,p=N (for example \
         m=128,t=3,p=4)"
            .to_owned()
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for part in text.split(',') {
        let (name, value) = part.split_once('=').ok_or_else(bad)?;
        let value: u32 = value.trim().parse().map_err(|_| bad())?;
        match name.trim() {
            "m" => m = Some(value),
            "t" => t = Some(value),
            "p" => p = Some(value),
            _ => return Err(bad()),
        }
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(bad());
    };
    let m_kib = m.checked_mul(1024).ok_or_else(bad)?;
    KdfParams::new(m_kib, t, p).map_err(|e| e.to_string())
}

/// The limit `--max-kdf-mib MIB` sets: MIB of memory, with the default limit's passes and
/// lanes (the most work is then that memory with t = 4).
pub(crate) fn limit_of_mib(mib: u32) -> Result<KdfParams, String> {
    let limit = KdfParams::DEFAULT_LIMIT;
    KdfParams::new(mib.saturating_mul(1024), limit.t(), limit.p()).map_err(|e| e.to_string())
}
