//! Crash consistency with real process kills.
//!
//! Each mode's test (the parent) creates a vault directory, then repeatedly spawns this very
//! test binary as a child (`--exact child_main`, selected by environment variables) that
//! opens the vault and works on it as fast as it can, and kills it with SIGKILL: 0..=3 ms
//! after spawn, inside the window earlier children spent in `Vault::open` (sled recovering
//! its log, a pending key rotation being finished), or 0..=60 ms after the child's open
//! returned. (In a debug build `Vault::open` alone takes ~100 ms, so a delay counted from
//! spawn would rarely get past it.) After each kill the parent opens the vault itself, or a
//! copy of the directory, and checks it against a model built from the child's
//! acknowledgements:
//!
//! - every write acknowledged before the kill holds its value (a key may also hold the one
//!   write that was in flight on it);
//! - `verify` is clean: nothing damaged, missing, orphaned or pending;
//! - nothing panics, and the vault opens.
//!
//! The next child continues on the same directory, so state accumulates across kills. When
//! the parent checked a copy, the next child opens the raw crash state itself (a crash during
//! the recovery from a crash).
//!
//! The child reports on stdout, one line per event, each flushed at once:
//! `@OPENING`, `@OPENED <seqid>`; `@B <ns> <key> <seq|->` before a write and
//! `@A <ns> <key> <seq|->` after it returned `Ok`; `@R <ns> <seqid>`, `@RP <ns> <done>` (after
//! each page) and `@RA <ns>` around a namespace-key rotation; `@P <n>` / `@PA <n>` around a
//! passphrase change to `pass-<n>`.
//!
//! Modes: `writes` (puts, compare-and-swaps and removals across four namespaces from three
//! threads, each key owned by one thread), `rotation` (a thread looping
//! `rotate_namespace_key` over a namespace of 300 records, another writing to it), and
//! `passphrase` (a thread looping `change_passphrase` to a new passphrase each time, another
//! writing).
//!
//! `TOKENVAULT_CRASH_KILLS=N` sets the total number of kills (default 240, split 50/20/30
//! across the modes); `TOKENVAULT_CRASH_SEED=S` fixes the parent's random choices (the
//! timing still varies); `TOKENVAULT_CRASH_VERBOSE=1` prints one line per kill (with
//! `--nocapture`). A summary per mode is printed at the end (with `--nocapture`).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokenvault::backend::{Backend, SledOptions};
use tokenvault::secrecy::{ExposeSecret, SecretBox, SecretString};
use tokenvault::{Error, KdfParams, KeySource, Token, Vault, VaultOptions};

// ---------------------------------------------------------------------------------------
// Shared between parent and child
// ---------------------------------------------------------------------------------------

const ENV_MODE: &str = "TOKENVAULT_CRASH_CHILD_MODE";
const ENV_DIR: &str = "TOKENVAULT_CRASH_CHILD_DIR";
const ENV_ITER: &str = "TOKENVAULT_CRASH_CHILD_ITER";
const ENV_SEED: &str = "TOKENVAULT_CRASH_CHILD_SEED";
const ENV_PASS: &str = "TOKENVAULT_CRASH_CHILD_PASS";
const ENV_KILLS: &str = "TOKENVAULT_CRASH_KILLS";
const ENV_PARENT_SEED: &str = "TOKENVAULT_CRASH_SEED";
const ENV_VERBOSE: &str = "TOKENVAULT_CRASH_VERBOSE";

const DEFAULT_KILLS: usize = 240;
/// Most kills land 0..=MAX_DELAY_US after the child's open returned; some 0..=EARLY_DELAY_US
/// after spawn; the rest inside the window earlier children spent in `Vault::open`.
const MAX_DELAY_US: u64 = 60_000;
const EARLY_DELAY_US: u64 = 3_000;
/// In rotation mode, a third of the kills after open come within this long instead.
const ROTATION_DELAY_US: u64 = 1_000_000;
/// A child that was never killed gives up after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);
const SIGKILL: i32 = 9;

const WRITE_NAMESPACES: [&str; 4] = [
    "tenant-alpha",
    "tenant-beta",
    "tenant-gamma",
    "tenant-delta",
];
const WRITE_KEYS_PER_NS: usize = 12;
const WRITE_THREADS: usize = 3;
const ROT_NS: &str = "rotating";
const ROT_RECORDS: usize = 300;
const BYSTANDER_NS: &str = "bystander";
const BYSTANDER_RECORDS: usize = 10;
const PP_NS: &str = "pp-data";
const PP_RECORDS: usize = 16;
/// Namespaces with at most this many keys are also listed with `keys()` at each check.
const KEYS_LIST_MAX: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Writes,
    Rotation,
    Passphrase,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Writes => "writes",
            Mode::Rotation => "rotation",
            Mode::Passphrase => "passphrase",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Mode::Writes, Mode::Rotation, Mode::Passphrase]
            .into_iter()
            .find(|m| m.name() == s)
    }

    /// Every (namespace, key) the mode ever writes.
    fn universe(self) -> Vec<(String, String)> {
        let mut keys = Vec::new();
        match self {
            Mode::Writes => {
                for ns in WRITE_NAMESPACES {
                    for k in 0..WRITE_KEYS_PER_NS {
                        keys.push((ns.to_owned(), format!("rs-{k:02}.example.org")));
                    }
                }
            }
            Mode::Rotation => {
                for k in 0..ROT_RECORDS {
                    keys.push((ROT_NS.to_owned(), format!("rec-{k:03}")));
                }
                for k in 0..BYSTANDER_RECORDS {
                    keys.push((BYSTANDER_NS.to_owned(), format!("by-{k:02}")));
                }
            }
            Mode::Passphrase => {
                for k in 0..PP_RECORDS {
                    keys.push((PP_NS.to_owned(), format!("pp-{k:02}")));
                }
            }
        }
        keys
    }
}

fn raw_key() -> KeySource {
    KeySource::raw_key(SecretBox::new(Box::new([0x5a; 32])))
}

fn pass(n: u64) -> KeySource {
    KeySource::passphrase(SecretString::from(format!("pass-{n}")))
}

fn options() -> VaultOptions {
    VaultOptions::new().kdf(KdfParams::insecure_for_tests())
}

/// SplitMix64: small, seedable, good enough for choosing delays and keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fresh_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    mix(nanos ^ u64::from(std::process::id()).rotate_left(32))
}

fn str_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The token written as sequence number `seq` of (`ns`, `key`): every field derived from
/// the three, some with a few KiB of padding so that records vary in size.
fn token_for(ns: &str, key: &str, seq: u64) -> Token {
    let h = mix(seq ^ str_hash(ns).rotate_left(17) ^ str_hash(key));
    let mut token = Token::new(format!("at:{ns}/{key}#{seq}").into())
        .with_refresh_token(format!("rt:{ns}/{key}#{seq}").into())
        .with_expires_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq % 100_000_000))
        .with_scopes(["openid", "offline_access"])
        .with_resource_server(key.to_owned());
    if h.is_multiple_of(4) {
        let len = usize::try_from((h >> 8) % 3000).unwrap_or(0);
        let fill = char::from(b'a' + u8::try_from((h >> 40) % 26).unwrap_or(0));
        let pad: String = std::iter::repeat_n(fill, len).collect();
        token = token.with_extra_json(format!(r#"{{"pad":"{pad}","seq":{seq}}}"#).into());
    }
    token
}

/// The sequence number a token read back claims, if it is a token of (`ns`, `key`).
fn seq_of(ns: &str, key: &str, token: &Token) -> Option<u64> {
    token
        .access_token()
        .expose_secret()
        .strip_prefix(&format!("at:{ns}/{key}#"))?
        .parse()
        .ok()
}

/// How many unfinished namespace-key rotations the storage in `dir` marks (format 2: keys
/// `0x01 || ns_id` in the manifests tree, docs/format.md section 7).
fn pending_rotation_marks(dir: &Path) -> Result<usize, String> {
    let backend = SledOptions::new()
        .lock_timeout(Duration::from_secs(10))
        .open(dir)
        .map_err(|e| format!("opening sled to look for rotation marks: {e}"))?;
    let marks = backend
        .scan(b"m", &[1], None, 100)
        .map_err(|e| format!("scanning for rotation marks: {e}"))?
        .len();
    backend
        .close()
        .map_err(|e| format!("closing sled after the marks: {e}"))?;
    Ok(marks)
}

/// The header's seqid, read from the file (offset 30, little-endian; docs/format.md 3.1/3.2).
fn header_seqid(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join("tokenvault.header")).ok()?;
    let raw: [u8; 8] = bytes.get(30..38)?.try_into().ok()?;
    Some(u64::from_le_bytes(raw))
}

// ---------------------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------------------

/// The child process: does nothing unless the parent set `TOKENVAULT_CRASH_CHILD_MODE`.
#[test]
fn child_main() {
    let Ok(mode) = std::env::var(ENV_MODE) else {
        return;
    };
    let mode = Mode::parse(&mode).unwrap_or_else(|| panic!("unknown child mode {mode:?}"));
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let dir = PathBuf::from(var(ENV_DIR));
    let iteration: u64 = var(ENV_ITER).parse().unwrap();
    let seed: u64 = var(ENV_SEED).parse().unwrap();
    let deadline = Instant::now() + CHILD_LIFETIME;

    emit("@OPENING");
    let mut pass_n = 0;
    let opened = match mode {
        Mode::Passphrase => {
            pass_n = var(ENV_PASS).parse().unwrap();
            options().open(&dir, &pass(pass_n))
        }
        _ => options().open(&dir, &raw_key()),
    };
    let vault = opened.unwrap_or_else(|e| panic!("child: open failed: {e}"));
    emit(&format!("@OPENED {}", vault.header_seqid().unwrap()));

    // Sequence numbers are unique across the whole run: the iteration in the high bits.
    let counter = Arc::new(AtomicU64::new((iteration + 1) << 32));
    let universe = mode.universe();
    let mut threads = Vec::new();
    let writers = if mode == Mode::Writes {
        WRITE_THREADS
    } else {
        1
    };
    for t in 0..writers {
        // Each key belongs to one thread, so that a key has at most one write in flight.
        let keys: Vec<(String, String)> = universe
            .iter()
            .enumerate()
            .filter(|(i, _)| i % writers == t)
            .map(|(_, k)| k.clone())
            .collect();
        let vault = vault.clone();
        let counter = counter.clone();
        let mut rng = Rng(mix(seed ^ (t as u64 + 1)));
        threads.push(std::thread::spawn(move || {
            guarded(|| writer_loop(&vault, &keys, &counter, &mut rng, deadline));
        }));
    }
    match mode {
        Mode::Writes => {}
        Mode::Rotation => {
            let vault = vault.clone();
            let mut rng = Rng(mix(seed ^ 0x5eed));
            threads.push(std::thread::spawn(move || {
                guarded(|| rotation_loop(&vault, &mut rng, deadline));
            }));
        }
        Mode::Passphrase => {
            let vault = vault.clone();
            threads.push(std::thread::spawn(move || {
                guarded(|| passphrase_loop(&vault, pass_n, deadline));
            }));
        }
    }
    for t in threads {
        let _ = t.join();
    }
}

/// One line to stdout, flushed before returning.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes()).unwrap();
    out.flush().unwrap();
}

/// Runs a child thread's body; a panic ends the whole child at once (the parent then sees
/// an exit instead of its SIGKILL, and reports the child's stderr).
fn guarded(f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        std::process::exit(3);
    }
}

fn writer_loop(
    vault: &Vault,
    keys: &[(String, String)],
    counter: &AtomicU64,
    rng: &mut Rng,
    deadline: Instant,
) {
    while Instant::now() < deadline {
        let (ns_name, key) = &keys[usize::try_from(rng.below(keys.len() as u64)).unwrap()];
        let ns = vault.namespace(ns_name).unwrap();
        let seq = counter.fetch_add(1, Ordering::SeqCst);
        match rng.below(10) {
            0..=6 => {
                emit(&format!("@B {ns_name} {key} {seq}"));
                ns.put(key, &token_for(ns_name, key, seq))
                    .unwrap_or_else(|e| panic!("child: put {ns_name}/{key}: {e}"));
                emit(&format!("@A {ns_name} {key} {seq}"));
            }
            7 | 8 => {
                let current = ns
                    .get_versioned::<Token>(key)
                    .unwrap_or_else(|e| panic!("child: get {ns_name}/{key}: {e}"));
                if let Some((token, _)) = &current {
                    assert!(
                        seq_of(ns_name, key, token).is_some(),
                        "child: {ns_name}/{key} holds a token of another key"
                    );
                }
                emit(&format!("@B {ns_name} {key} {seq}"));
                ns.compare_and_swap(key, current.map(|(_, v)| v), &token_for(ns_name, key, seq))
                    .unwrap_or_else(|e| panic!("child: compare_and_swap {ns_name}/{key}: {e}"))
                    .unwrap_or_else(|c| {
                        panic!("child: compare_and_swap {ns_name}/{key} conflicted: {c:?}")
                    });
                emit(&format!("@A {ns_name} {key} {seq}"));
            }
            _ => {
                emit(&format!("@B {ns_name} {key} -"));
                ns.remove(key)
                    .unwrap_or_else(|e| panic!("child: remove {ns_name}/{key}: {e}"));
                emit(&format!("@A {ns_name} {key} -"));
            }
        }
    }
}

fn rotation_loop(vault: &Vault, rng: &mut Rng, deadline: Instant) {
    while Instant::now() < deadline {
        // Mostly the big namespace; now and then the small one.
        let ns = if rng.chance(0.2) {
            BYSTANDER_NS
        } else {
            ROT_NS
        };
        emit(&format!("@R {ns} {}", vault.header_seqid().unwrap()));
        // Progress comes after each page of records is re-sealed and flushed.
        vault
            .rotate_namespace_key(ns, |p| emit(&format!("@RP {ns} {}", p.done)))
            .unwrap_or_else(|e| panic!("child: rotate_namespace_key({ns}): {e}"));
        emit(&format!("@RA {ns}"));
    }
}

fn passphrase_loop(vault: &Vault, mut n: u64, deadline: Instant) {
    while Instant::now() < deadline {
        emit(&format!("@P {}", n + 1));
        vault
            .change_passphrase(&pass(n), &pass(n + 1))
            .unwrap_or_else(|e| {
                panic!("child: change_passphrase(pass-{n} -> pass-{}): {e}", n + 1)
            });
        n += 1;
        emit(&format!("@PA {n}"));
    }
}

// ---------------------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------------------

#[test]
fn crash_writes() {
    let total = total_kills();
    CrashRun::new(Mode::Writes, total - total / 5 - total * 3 / 10).run();
}

#[test]
fn crash_rotation() {
    CrashRun::new(Mode::Rotation, total_kills() / 5).run();
}

#[test]
fn crash_passphrase() {
    CrashRun::new(Mode::Passphrase, total_kills() * 3 / 10).run();
}

fn total_kills() -> usize {
    std::env::var(ENV_KILLS)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{ENV_KILLS}={v:?} is not a number"))
        })
        .unwrap_or(DEFAULT_KILLS)
}

/// What may be stored under each key: the last acknowledged value, plus in-flight ones.
/// `None` is "no record".
type Model = BTreeMap<(String, String), BTreeSet<Option<u64>>>;

/// When to kill a child.
#[derive(Clone, Copy, Debug)]
enum Strategy {
    /// This long after spawn, aimed at the window in which earlier children were inside
    /// `Vault::open`.
    Open(Duration),
    /// 0..=3 ms after spawn: before or early in the open.
    Early(Duration),
    /// 0..=60 ms after the child reported its open done: while it works.
    AfterOpen(Duration),
    /// 0..=3 ms after a rotation reported its last page re-sealed: around the header write
    /// that drops the old key.
    AfterLastPage(Duration),
}

impl Strategy {
    fn index(self) -> usize {
        match self {
            Strategy::Open(_) => 0,
            Strategy::Early(_) => 1,
            Strategy::AfterOpen(_) => 2,
            Strategy::AfterLastPage(_) => 3,
        }
    }
}

/// Where the child was when it died, from its last lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Landed {
    BeforeOpen,
    DuringOpen,
    Working,
}

/// What the child's lines said.
#[derive(Default)]
struct Observed {
    lines: Vec<(Duration, String)>,
    opening_at: Option<Duration>,
    opened_at: Option<Duration>,
    /// Writes begun but not acknowledged: (ns, key) -> value.
    in_flight: BTreeMap<(String, String), Option<u64>>,
    acks: usize,
    /// A rotation begun and not acknowledged: (namespace, header seqid before it).
    rotation: Option<(String, u64)>,
    /// Records the current rotation reported done (after each page).
    rotation_done_records: Option<u64>,
    rotations_done: usize,
    /// Passphrase changes: the last acknowledged number, and one begun after it.
    pass_acked: Option<u64>,
    pass_begun: Option<u64>,
}

impl Observed {
    fn landed(&self) -> Landed {
        match (self.opening_at, self.opened_at) {
            (None, _) => Landed::BeforeOpen,
            (Some(_), None) => Landed::DuringOpen,
            _ => Landed::Working,
        }
    }
}

#[derive(Default, Debug)]
struct Stats {
    kills: usize,
    before_open: usize,
    during_open: usize,
    during_open_resuming_rotation: usize,
    working: usize,
    writes_in_flight: usize,
    in_flight_applied: usize,
    in_flight_not_applied: usize,
    acked_writes: usize,
    during_rotation: usize,
    rotation_pending_on_disk: usize,
    /// Kills after a rotation re-sealed its last page, before it acknowledged.
    rotation_after_last_page: usize,
    /// ... of which the header still held the old key: the resume only had to drop it.
    rotation_all_resealed_old_key_kept: usize,
    rotations_acked: usize,
    during_passphrase_change: usize,
    passphrase_unacked_applied: usize,
    passphrase_changes_acked: usize,
    copy_checks: usize,
    by_strategy: [usize; 4],
    /// Most orphaned trees a check found (kills during a namespace creation leave them).
    orphans_seen: usize,
}

struct CrashRun {
    mode: Mode,
    kills: usize,
    seed: u64,
    rng: Rng,
    base: Option<tempfile::TempDir>,
    dir: PathBuf,
    check_dir: PathBuf,
    model: Model,
    stats: Stats,
    /// The passphrase number that opens the vault (passphrase mode).
    pass: u64,
    /// The header seqid at which the directory holds a pending rotation, if it does (left so
    /// by a kill whose state was checked on a copy).
    /// Whether the directory holds an unfinished rotation (a copy was checked last time).
    pending_rotation: bool,
    /// When earlier children printed `@OPENING` and `@OPENED`, relative to their spawn.
    open_windows: VecDeque<(Duration, Duration)>,
    exe: PathBuf,
}

/// Everything needed to understand one failed iteration.
struct Failure {
    iteration: usize,
    /// When the kill was sent, after spawn.
    killed_at: Duration,
    strategy: Strategy,
    landed: Option<Landed>,
    checked: PathBuf,
    lines: Vec<String>,
    stderr: String,
    message: String,
}

impl CrashRun {
    fn new(mode: Mode, kills: usize) -> Self {
        let seed = std::env::var(ENV_PARENT_SEED)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(fresh_seed)
            ^ str_hash(mode.name());
        let base = tempfile::Builder::new()
            .prefix(&format!("tokenvault-crash-{}-", mode.name()))
            .tempdir()
            .unwrap();
        let dir = base.path().join("vault");
        let check_dir = base.path().join("check");
        Self {
            mode,
            kills,
            seed,
            rng: Rng(seed),
            base: Some(base),
            dir,
            check_dir,
            model: Model::new(),
            stats: Stats::default(),
            pass: 0,
            pending_rotation: false,
            open_windows: VecDeque::new(),
            exe: std::env::current_exe().unwrap(),
        }
    }

    /// Creates the vault and its initial records, and the model to match.
    fn setup(&mut self) {
        let universe = self.mode.universe();
        let vault = match self.mode {
            Mode::Passphrase => options().create(&self.dir, &pass(0)),
            _ => options().create(&self.dir, &raw_key()),
        }
        .unwrap();
        for (ns, key) in universe {
            // The writes mode starts empty: its children create the namespaces.
            let value = if self.mode == Mode::Writes {
                None
            } else {
                vault
                    .namespace(&ns)
                    .unwrap()
                    .put(&key, &token_for(&ns, &key, 0))
                    .unwrap();
                Some(0)
            };
            self.model.insert((ns, key), BTreeSet::from([value]));
        }
        vault.close().unwrap();
    }

    fn run(mut self) {
        let started = Instant::now();
        self.setup();
        let mut slowest = Duration::ZERO;
        for iteration in 0..self.kills {
            let t0 = Instant::now();
            if let Err(failure) = self.iteration(iteration) {
                self.fail(&failure);
            }
            slowest = slowest.max(t0.elapsed());
        }
        let s = &self.stats;
        eprintln!(
            "crash test [{}]: {} kills in {:.1?} (slowest iteration {:.1?}), seed {}\n  {:?}",
            self.mode.name(),
            s.kills,
            started.elapsed(),
            slowest,
            self.seed,
            s
        );
        // The test must actually have hit the interesting moments.
        if s.kills >= 20 {
            assert!(
                s.during_open * 10 >= s.kills,
                "[{}] only {} of {} kills landed during Vault::open (need 10%)",
                self.mode.name(),
                s.during_open,
                s.kills
            );
            match self.mode {
                Mode::Writes => assert!(s.writes_in_flight > 0, "no kill landed during a write"),
                Mode::Rotation => assert!(
                    s.rotation_pending_on_disk > 0,
                    "no kill left a namespace-key rotation pending"
                ),
                Mode::Passphrase => assert!(
                    s.during_passphrase_change > 0,
                    "no kill landed during a passphrase change"
                ),
            }
        }
    }

    fn choose_strategy(&mut self) -> Strategy {
        let r = self.rng.next() as f64 / u64::MAX as f64;
        // Aim at the open for a tenth of the kills, and whenever fewer than 15% so far landed
        // there.
        let behind = (self.stats.during_open as f64) < 0.15 * (self.stats.kills + 1) as f64;
        if self.open_windows.len() >= 3 && (r < 0.1 || behind) {
            // Inside the open window of one of the recent children, picked at random.
            let n = self.open_windows.len() as u64;
            let (lo, hi) = self.open_windows[usize::try_from(self.rng.below(n)).unwrap()];
            let lo = lo.as_micros() as u64;
            let hi = (hi.as_micros() as u64).max(lo + 1);
            Strategy::Open(Duration::from_micros(lo + self.rng.below(hi - lo + 1)))
        } else if r < 0.15 {
            Strategy::Early(Duration::from_micros(self.rng.below(EARLY_DELAY_US + 1)))
        } else if self.mode == Mode::Rotation && self.rng.chance(0.2) {
            Strategy::AfterLastPage(Duration::from_micros(self.rng.below(EARLY_DELAY_US + 1)))
        } else {
            let max = match self.mode {
                // A rotation of 300 records takes a few hundred ms (debug build): reach its
                // end, not only its first records.
                Mode::Rotation if self.rng.chance(0.35) => ROTATION_DELAY_US,
                _ => MAX_DELAY_US,
            };
            Strategy::AfterOpen(Duration::from_micros(self.rng.below(max + 1)))
        }
    }

    fn iteration(&mut self, iteration: usize) -> Result<(), Box<Failure>> {
        let strategy = self.choose_strategy();
        let mut failure = Failure {
            iteration,
            killed_at: Duration::ZERO,
            strategy,
            landed: None,
            checked: self.dir.clone(),
            lines: Vec::new(),
            stderr: String::new(),
            message: String::new(),
        };
        let seqid_before_spawn = header_seqid(&self.dir);

        // Spawn, wait, kill.
        let (lines, stderr, status, killed_at) = self.spawn_and_kill(iteration, strategy);
        failure.killed_at = killed_at;
        failure.lines = lines
            .iter()
            .filter(|(_, l)| l.contains('@'))
            .map(|(t, l)| format!("{:>9.3}ms {l}", t.as_secs_f64() * 1e3))
            .collect();
        failure.stderr = stderr;
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                failure.message = format!("could not run the child: {e}");
                return Err(Box::new(failure));
            }
        };
        if status.signal() != Some(SIGKILL) {
            failure.message = format!("the child ended by itself before it was killed: {status:?}");
            return Err(Box::new(failure));
        }
        let observed = match self.observe(lines) {
            Ok(observed) => observed,
            Err(message) => {
                failure.message = message;
                return Err(Box::new(failure));
            }
        };
        let landed = observed.landed();
        failure.landed = Some(landed);
        if std::env::var_os(ENV_VERBOSE).is_some() {
            eprintln!(
                "[{}] #{iteration} {strategy:.1?} killed at {killed_at:.1?}, landed \
                 {landed:?}: opening at {:.1?}, opened at {:.1?}, {} lines, {} acks, in \
                 flight {:?}, rotation {:?}, passphrase acked {:?} begun {:?}",
                self.mode.name(),
                observed.opening_at,
                observed.opened_at,
                observed.lines.len(),
                observed.acks,
                observed.in_flight,
                observed.rotation,
                observed.pass_acked,
                observed.pass_begun,
            );
        }

        // Statistics, the timing estimate and the model.
        self.stats.kills += 1;
        self.stats.by_strategy[strategy.index()] += 1;
        match landed {
            Landed::BeforeOpen => self.stats.before_open += 1,
            Landed::DuringOpen => {
                self.stats.during_open += 1;
                if self.pending_rotation {
                    self.stats.during_open_resuming_rotation += 1;
                }
            }
            Landed::Working => self.stats.working += 1,
        }
        if let (Some(a), Some(b)) = (observed.opening_at, observed.opened_at) {
            self.open_windows.push_back((a, b));
            if self.open_windows.len() > 12 {
                self.open_windows.pop_front();
            }
        }
        self.stats.acked_writes += observed.acks;
        self.stats.rotations_acked += observed.rotations_done;
        if !observed.in_flight.is_empty() {
            self.stats.writes_in_flight += 1;
        }
        for (k, v) in &observed.in_flight {
            self.model.entry(k.clone()).or_default().insert(*v);
        }

        // Check the vault in place, or a copy of it (leaving the raw crash state to the
        // next child).
        let copy = self.rng.chance(0.35);
        let target = if copy {
            self.stats.copy_checks += 1;
            let _ = std::fs::remove_dir_all(&self.check_dir);
            if let Err(e) = copy_dir(&self.dir, &self.check_dir) {
                failure.message = format!("could not copy the vault directory: {e}");
                return Err(Box::new(failure));
            }
            self.check_dir.clone()
        } else {
            self.dir.clone()
        };
        failure.checked = target.clone();
        match self.check(&target, &observed, seqid_before_spawn) {
            Ok(found) => {
                for (k, v) in &observed.in_flight {
                    if found.get(k) == Some(v) {
                        self.stats.in_flight_applied += 1;
                    } else {
                        self.stats.in_flight_not_applied += 1;
                    }
                }
                // What the next child starts from: fixed by an in-place open and close;
                // still undecided on the original after a check of a copy.
                if !copy {
                    for (k, v) in found {
                        self.model.insert(k, BTreeSet::from([v]));
                    }
                }
                Ok(())
            }
            Err(message) => {
                failure.message = message;
                Err(Box::new(failure))
            }
        }
    }

    /// Runs one child until `strategy` says, then SIGKILLs it; returns its lines, stderr,
    /// exit status and when the kill was sent.
    fn spawn_and_kill(
        &mut self,
        iteration: usize,
        strategy: Strategy,
    ) -> (
        Vec<(Duration, String)>,
        String,
        std::io::Result<std::process::ExitStatus>,
        Duration,
    ) {
        let mut command = Command::new(&self.exe);
        command
            .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
            .env(ENV_MODE, self.mode.name())
            .env(ENV_DIR, &self.dir)
            .env(ENV_ITER, iteration.to_string())
            .env(ENV_SEED, self.rng.next().to_string())
            .env(ENV_PASS, self.pass.to_string())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return (Vec::new(), String::new(), Err(e), Duration::ZERO),
        };
        let mut child = KillOnDrop(child);
        let (tx, rx) = mpsc::channel::<(Duration, String)>();
        let stdout = child.0.stdout.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((start.elapsed(), line)).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.0.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        let mut lines = Vec::new();
        match strategy {
            Strategy::Open(delay) | Strategy::Early(delay) => {
                while let Some(left) = delay.checked_sub(start.elapsed()) {
                    match rx.recv_timeout(left) {
                        Ok(line) => lines.push(line),
                        Err(_) => break,
                    }
                }
            }
            Strategy::AfterOpen(delay) | Strategy::AfterLastPage(delay) => {
                let trigger = |line: &str| match strategy {
                    Strategy::AfterOpen(_) => line.contains("@OPENED"),
                    // Pages are 256 records: a partial page is the last one.
                    _ => line.split_once("@RP ").is_some_and(|(_, rest)| {
                        rest.rsplit(' ')
                            .next()
                            .and_then(|done| done.parse::<u64>().ok())
                            .is_some_and(|done| done % 256 != 0)
                    }),
                };
                while let Ok(line) = rx.recv_timeout(CHILD_LIFETIME) {
                    let triggered = trigger(&line.1);
                    lines.push(line);
                    if triggered {
                        std::thread::sleep(delay);
                        break;
                    }
                }
            }
        }
        let killed_at = start.elapsed();
        let _ = child.0.kill();
        let status = child.0.wait();
        let _ = out_reader.join();
        lines.extend(rx.try_iter());
        let stderr = err_reader.join().unwrap_or_default();
        (lines, stderr, status, killed_at)
    }

    /// Reads the child's lines, applying acknowledgements to the model as it goes.
    fn observe(&mut self, lines: Vec<(Duration, String)>) -> Result<Observed, String> {
        let mut o = Observed::default();
        for (at, line) in &lines {
            // libtest's "test child_main ... " may precede the first line.
            let Some(start) = line.find('@') else {
                continue;
            };
            let bad = || format!("unexpected line from the child: {line:?}");
            let number = |w: &str| w.parse::<u64>().map_err(|_| bad());
            let value = |w: &str| match w {
                "-" => Ok(None),
                _ => number(w).map(Some),
            };
            let words: Vec<&str> = line[start + 1..].split(' ').collect();
            match words.as_slice() {
                ["OPENING"] => o.opening_at = Some(*at),
                ["OPENED", _] => o.opened_at = Some(*at),
                ["B", ns, key, v] => {
                    o.in_flight
                        .insert(((*ns).to_owned(), (*key).to_owned()), value(v)?);
                }
                ["A", ns, key, v] => {
                    let k = ((*ns).to_owned(), (*key).to_owned());
                    let v = value(v)?;
                    if o.in_flight.remove(&k) != Some(v) {
                        return Err(format!("acknowledgement without its begin: {line:?}"));
                    }
                    if !self.model.contains_key(&k) {
                        return Err(format!("a write to a key outside the mode's set: {line:?}"));
                    }
                    self.model.insert(k, BTreeSet::from([v]));
                    o.acks += 1;
                }
                ["R", ns, seqid] => {
                    o.rotation = Some(((*ns).to_owned(), number(seqid)?));
                    o.rotation_done_records = None;
                }
                ["RP", _, done] => o.rotation_done_records = Some(number(done)?),
                ["RA", _] => {
                    o.rotation = None;
                    o.rotations_done += 1;
                }
                ["P", n] => o.pass_begun = Some(number(n)?),
                ["PA", n] => {
                    let n = number(n)?;
                    if o.pass_begun != Some(n) {
                        return Err(format!("acknowledgement without its begin: {line:?}"));
                    }
                    o.pass_acked = Some(n);
                    o.pass_begun = None;
                }
                _ => return Err(bad()),
            }
        }
        o.lines = lines;
        Ok(o)
    }

    /// Opens the vault at `target` and checks it; returns what each key holds.
    fn check(
        &mut self,
        target: &Path,
        observed: &Observed,
        seqid_before_spawn: Option<u64>,
    ) -> Result<BTreeMap<(String, String), Option<u64>>, String> {
        let Some(file_seqid) = header_seqid(target) else {
            let open = match self.open_checked(target, observed) {
                Ok(vault) => format!("opens anyway (close: {:?})", vault.close()),
                Err(e) => format!("does not open: {e}"),
            };
            return Err(format!(
                "the header file is missing or shorter than 38 bytes; the vault {open}"
            ));
        };

        // Was a namespace-key rotation pending on disk at the kill? (Format 2 marks it in
        // storage; rotations never write the header.)
        let mut rotation_pending = false;
        if self.mode == Mode::Rotation {
            rotation_pending = pending_rotation_marks(target)? > 0;
            let before = seqid_before_spawn.unwrap_or(0);
            if let Some((ns, at_start)) = &observed.rotation {
                self.stats.during_rotation += 1;
                if file_seqid != *at_start {
                    return Err(format!(
                        "rotation of {ns} began at header seqid {at_start}; the header now has \
                         seqid {file_seqid} (a rotation writes no header)"
                    ));
                }
                // Pages are 256 records: a partial page is the last one.
                if observed
                    .rotation_done_records
                    .is_some_and(|done| done % 256 != 0)
                {
                    self.stats.rotation_after_last_page += 1;
                    if rotation_pending {
                        self.stats.rotation_all_resealed_old_key_kept += 1;
                    }
                }
            }
            // In rotation mode the child never closes, so it never checkpoints: nothing it
            // does, its open included (which finishes a pending rotation), writes the header.
            if file_seqid != before {
                return Err(format!(
                    "the header seqid went from {before} to {file_seqid} in a rotation child \
                     (rotation pending before it: {})",
                    self.pending_rotation
                ));
            }
            if rotation_pending {
                self.stats.rotation_pending_on_disk += 1;
            }
        }

        // Open: passphrase mode must open with the last acknowledged passphrase or the one
        // being set, and with exactly one of them.
        let opened = catch_unwind(AssertUnwindSafe(|| self.open_checked(target, observed)));
        let vault = match opened {
            Ok(result) => result?,
            Err(panic) => {
                return Err(format!(
                    "opening the vault panicked: {}",
                    panic_text(&*panic)
                ))
            }
        };
        let checked = catch_unwind(AssertUnwindSafe(|| {
            self.check_open_vault(&vault, file_seqid, rotation_pending)
        }));
        let result = match checked {
            Ok(result) => result,
            Err(panic) => Err(format!(
                "checking the vault panicked: {}",
                panic_text(&*panic)
            )),
        };
        let closed = vault.close();
        let found = result?;
        closed.map_err(|e| format!("close failed: {e}"))?;

        if self.mode == Mode::Rotation {
            // In place, the open just finished any pending rotation; on a copy, the original
            // still holds it.
            self.pending_rotation = rotation_pending && target != self.dir;
        }
        Ok(found)
    }

    fn open_checked(&mut self, target: &Path, observed: &Observed) -> Result<Vault, String> {
        if self.mode != Mode::Passphrase {
            return options()
                .open(target, &raw_key())
                .map_err(|e| format!("the vault does not open: {e}"));
        }
        let acked = observed.pass_acked.unwrap_or(self.pass);
        self.stats.passphrase_changes_acked += usize::try_from(acked - self.pass).unwrap();
        let mut candidates = vec![acked];
        if let Some(next) = observed.pass_begun {
            self.stats.during_passphrase_change += 1;
            candidates.push(next);
        }
        // One stale passphrase and one never set must fail too.
        let mut wrong = vec![acked + 2];
        if acked > 0 {
            wrong.push(acked - 1);
        }
        if observed.pass_begun.is_none() {
            wrong.push(acked + 1);
        }
        let mut opens = Vec::new();
        for n in candidates.iter().chain(&wrong) {
            match options().open(target, &pass(*n)) {
                Ok(vault) => {
                    vault
                        .close()
                        .map_err(|e| format!("close after opening with pass-{n} failed: {e}"))?;
                    opens.push(*n);
                }
                Err(Error::WrongKey) => {}
                Err(e) => return Err(format!("opening with pass-{n} failed: {e}")),
            }
        }
        let [n] = opens.as_slice() else {
            return Err(format!(
                "the vault opens with passphrases {opens:?}; expected exactly one of \
                 {candidates:?} (last acknowledged: pass-{acked})"
            ));
        };
        if !candidates.contains(n) {
            return Err(format!(
                "the vault opens with pass-{n}, not with any of {candidates:?}"
            ));
        }
        if *n != acked {
            self.stats.passphrase_unacked_applied += 1;
        }
        self.pass = *n;
        options()
            .open(target, &pass(*n))
            .map_err(|e| format!("the vault opened once with pass-{n}, then not: {e}"))
    }

    fn check_open_vault(
        &mut self,
        vault: &Vault,
        file_seqid: u64,
        rotation_pending: bool,
    ) -> Result<BTreeMap<(String, String), Option<u64>>, String> {
        let seqid = vault.header_seqid().map_err(|e| e.to_string())?;
        if self.mode == Mode::Rotation && seqid != file_seqid {
            return Err(format!(
                "after open the header seqid is {seqid}, expected {file_seqid} (rotation \
                 pending: {rotation_pending}): an open writes no header"
            ));
        }

        let report = vault
            .verify(|_| {})
            .map_err(|e| format!("verify failed: {e}"))?;
        let mut problems = String::new();
        for n in &report.namespaces {
            if !n.damaged.is_empty() {
                let _ = write!(problems, "\n  {}: damaged {:?}", n.namespace, n.damaged);
            }
            if n.missing > 0 {
                let _ = write!(problems, "\n  {}: {} missing", n.namespace, n.missing);
            }
            if let Some(m) = n.manifest_damaged {
                let _ = write!(problems, "\n  {}: manifest damaged: {m}", n.namespace);
            }
            if n.rotation_pending {
                let _ = write!(
                    problems,
                    "\n  {}: rotation still pending after open",
                    n.namespace
                );
            }
        }
        // A kill between a namespace's manifest write and its header write leaves an orphaned
        // tree: the vault keeps it (it cannot tell it from a newer header's namespace) and
        // verify reports it; no acknowledged write is in it (the model check below).
        self.stats.orphans_seen = self.stats.orphans_seen.max(report.orphan_trees);
        if !problems.is_empty() {
            return Err(format!("verify is not clean:{problems}\nreport:\n{report}"));
        }

        // Every key against the model.
        let mut found = BTreeMap::new();
        let mut by_ns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (ns, key) in self.model.keys() {
            by_ns.entry(ns).or_default().push(key);
        }
        let namespaces = vault.namespaces().map_err(|e| e.to_string())?;
        for ns_name in by_ns.keys() {
            let must_exist = self
                .model
                .iter()
                .any(|((n, _), allowed)| n == ns_name && !allowed.contains(&None));
            if must_exist && !namespaces.iter().any(|n| n == ns_name) {
                return Err(format!(
                    "namespace {ns_name} is gone; it holds acknowledged records"
                ));
            }
        }
        if let Some(stray) = namespaces.iter().find(|n| !by_ns.contains_key(n.as_str())) {
            return Err(format!(
                "the vault has a namespace never written: {stray:?}"
            ));
        }
        for (ns_name, keys) in &by_ns {
            let ns = vault.namespace(ns_name).map_err(|e| e.to_string())?;
            // `keys()` opens every record, as `verify` just did: only for small namespaces;
            // the big one is checked against `verify`'s count below.
            let listed: Option<BTreeSet<String>> = if keys.len() <= KEYS_LIST_MAX {
                let listed: BTreeSet<String> = ns
                    .keys()
                    .map_err(|e| format!("keys() of {ns_name} failed: {e}"))?
                    .into_iter()
                    .collect();
                if let Some(stray) = listed.iter().find(|k| !keys.contains(&k.as_str())) {
                    return Err(format!("{ns_name} lists a key never written: {stray:?}"));
                }
                Some(listed)
            } else {
                None
            };
            let mut present = 0u64;
            for key in keys {
                let k = ((*ns_name).to_owned(), (*key).to_owned());
                let allowed = &self.model[&k];
                let got = ns.get::<Token>(key).map_err(|e| {
                    format!("get {ns_name}/{key} failed: {e} (expected one of {allowed:?})")
                })?;
                let value = match &got {
                    None => None,
                    Some(token) => {
                        let seq = seq_of(ns_name, key, token).ok_or_else(|| {
                            format!("{ns_name}/{key} holds a token of something else")
                        })?;
                        if !token.same_as(&token_for(ns_name, key, seq)) {
                            return Err(format!(
                                "{ns_name}/{key} holds seq {seq}, but not exactly as written"
                            ));
                        }
                        Some(seq)
                    }
                };
                if let Some(listed) = &listed {
                    if listed.contains(*key) != value.is_some() {
                        return Err(format!(
                            "{ns_name}/{key}: get says {value:?} but keys() {} it",
                            if listed.contains(*key) {
                                "lists"
                            } else {
                                "omits"
                            }
                        ));
                    }
                }
                present += u64::from(value.is_some());
                if !allowed.contains(&value) {
                    return Err(format!(
                        "{ns_name}/{key} holds {value:?}; acknowledged/in flight: {allowed:?} \
                         (None = no record): an acknowledged write was lost"
                    ));
                }
                found.insert(k, value);
            }
            let verified = report
                .namespaces
                .iter()
                .find(|n| n.namespace == *ns_name)
                .map_or(0, |n| n.ok);
            if verified != present {
                return Err(format!(
                    "{ns_name}: verify counts {verified} records, get finds {present} of the \
                     keys ever written"
                ));
            }
        }
        Ok(found)
    }

    fn fail(&mut self, f: &Failure) -> ! {
        // Keep the directory for inspection.
        let kept = self.base.take().map(tempfile::TempDir::keep);
        let lines = f.lines.len();
        let tail: Vec<&String> = f.lines.iter().skip(lines.saturating_sub(25)).collect();
        let stderr_tail: String = {
            let all: Vec<&str> = f.stderr.lines().collect();
            all[all.len().saturating_sub(30)..].join("\n    ")
        };
        panic!(
            "crash test failed\n  mode: {}\n  iteration: {} of {} (seed {}; rerun with \
             {ENV_PARENT_SEED}={}; timing is not reproducible)\n  kill: {:.3?} after spawn \
             ({:.3?}), landed: {:?}\n  vault directory \
             (kept): {}\n  checked: {}\n  error: {}\n  last of {} child lines (@A = \
             acknowledged):\n    {}\n  child stderr (tail):\n    {}\n  stats so far: {:?}",
            self.mode.name(),
            f.iteration + 1,
            self.kills,
            self.seed,
            self.seed ^ str_hash(self.mode.name()),
            f.killed_at,
            f.strategy,
            f.landed,
            kept.as_deref().unwrap_or(&self.dir).display(),
            f.checked.display(),
            f.message,
            lines,
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    "),
            stderr_tail,
            self.stats,
        );
    }
}

/// Kills the child if the parent unwinds before it did.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(not a string)".into())
}
