//! The shared-storage model test of `shared.rs`, with every handle in a process of its own, on
//! the PostgreSQL test server: the handles share nothing but the database.
//!
//! Each handle is a child process (this test binary, `--exact shared_remote::child_main`)
//! that opens the vault through its own [`Hooked`] view of its own connection pool and runs
//! the operations the parent sends it, one JSON line each. An interleaving crosses processes:
//! the child stops before the chosen backend call of its operation and says so; the parent
//! runs the other handle's operation in the other process, then lets the first go on. A lost
//! reply is lost inside the child. The parent checks each step against the model exactly as
//! for handles in one process.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Command;
use std::sync::Arc;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use support::child::Piped;
use tokenvault::backend::{Backend, PostgresBackend};
use tokenvault::Vault;

use super::shared::{
    cases, observe, raw, run, step, Answer, Handles, Hooked, Injected, Op, Seen, World,
};

const ENV_URL: &str = "TOKENVAULT_MODEL_CHILD_URL";
const ENV_VAULT: &str = "TOKENVAULT_MODEL_CHILD_VAULT";
/// What the child prints in front of its messages (libtest prints lines of its own).
const MARK: &str = "TVMODEL ";

/// From the parent to a child.
#[derive(Serialize, Deserialize)]
enum Request {
    /// Run `op`; stop before backend call `at` (then wait for `Continue`); lose the reply of
    /// the first write if `lose`.
    Run {
        op: Op,
        at: Option<usize>,
        lose: bool,
    },
    Continue,
    Observe,
    Verify,
    Reopen,
    Close,
}

/// Records by (namespace, key), as a list (JSON maps want string keys).
type Records = Vec<((usize, usize), u8)>;

/// From a child to the parent.
#[derive(Serialize, Deserialize)]
enum Reply {
    Paused,
    Answer(Result<Answer, String>),
    Seen(Result<Records, String>, Vec<usize>),
    Done(Result<(), String>),
}

fn reply(reply: &Reply) {
    let line = serde_json::to_string(reply).unwrap();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

fn read_request() -> Option<Request> {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).unwrap() == 0 {
        return None;
    }
    Some(serde_json::from_str(line.trim()).unwrap())
}

/// A handle: opens the vault and serves the parent's requests until `Close`.
#[test]
fn child_main() {
    let (Ok(url), Ok(name)) = (std::env::var(ENV_URL), std::env::var(ENV_VAULT)) else {
        return;
    };
    let backend: Arc<dyn Backend> = Arc::new(PostgresBackend::connect(&url, &name).unwrap());
    let mut hooked = Hooked::new(Arc::clone(&backend));
    let mut vault = Vault::open_with_backend(hooked.clone(), &raw(1)).unwrap();
    reply(&Reply::Done(Ok(())));
    while let Some(request) = read_request() {
        match request {
            Request::Run { op, at, lose } => {
                let hook = at.map(|at| {
                    let f: Injected = Box::new(|| {
                        reply(&Reply::Paused);
                        assert!(matches!(read_request(), Some(Request::Continue)));
                    });
                    (at, f)
                });
                hooked.arm(hook, lose.then_some(0));
                let answer = run(&vault, &op);
                hooked.arm(None, None);
                reply(&Reply::Answer(answer));
            }
            Request::Continue => panic!("nothing to continue"),
            Request::Observe => match observe(&vault) {
                Ok((data, namespaces)) => reply(&Reply::Seen(
                    Ok(data.into_iter().collect()),
                    namespaces.into_iter().collect(),
                )),
                Err(e) => reply(&Reply::Seen(Err(e), Vec::new())),
            },
            Request::Verify => reply(&Reply::Done(match vault.verify(|_| {}) {
                Ok(report) if report.is_clean() => Ok(()),
                Ok(report) => Err(format!("verify: {report}")),
                Err(e) => Err(e.to_string()),
            })),
            Request::Reopen => {
                let closed = vault.clone().close().map_err(|e| format!("close: {e}"));
                hooked = Hooked::new(Arc::clone(&backend));
                let opened = Vault::open_with_backend(hooked.clone(), &raw(1));
                reply(&Reply::Done(closed.and(match opened {
                    Ok(v) => {
                        vault = v;
                        Ok(())
                    }
                    Err(e) => Err(format!("reopen: {e}")),
                })));
            }
            Request::Close => {
                let closed = vault.clone().close().map_err(|e| format!("close: {e}"));
                reply(&Reply::Done(closed));
                break;
            }
        }
    }
}

/// A handle in a child process.
struct Remote(Piped);

impl Remote {
    fn spawn(url: &str, vault: &str) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "shared_remote::child_main",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_URL, url)
            .env(ENV_VAULT, vault);
        let mut remote = Self(Piped::spawn(command));
        match remote.recv() {
            Reply::Done(Ok(())) => remote,
            _ => panic!("the child did not open the vault"),
        }
    }

    fn send(&mut self, request: &Request) {
        self.0.send(&serde_json::to_string(request).unwrap());
    }

    fn recv(&mut self) -> Reply {
        serde_json::from_str(&self.0.after(MARK)).unwrap()
    }

    fn request(&mut self, request: &Request) -> Reply {
        self.send(request);
        self.recv()
    }

    fn run(&mut self, op: &Op) -> Result<Answer, String> {
        let run = Request::Run {
            op: op.clone(),
            at: None,
            lose: false,
        };
        match self.request(&run) {
            Reply::Answer(answer) => answer,
            _ => Err("the child did not answer".to_owned()),
        }
    }

    fn done(&mut self, request: &Request) -> Result<(), String> {
        match self.request(request) {
            Reply::Done(done) => done,
            _ => Err("the child did not answer".to_owned()),
        }
    }
}

struct Processes(Vec<Remote>);

impl Handles for Processes {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn reopen(&mut self, a: usize) -> Result<(), String> {
        self.0[a].done(&Request::Reopen)
    }

    fn execute(
        &mut self,
        a: usize,
        op_a: &Op,
        inject: Option<(usize, usize, Op)>,
        lose: bool,
    ) -> (Result<Answer, String>, Option<Result<Answer, String>>) {
        let run = Request::Run {
            op: op_a.clone(),
            at: inject.as_ref().map(|(_, at, _)| *at),
            lose,
        };
        self.0[a].send(&run);
        let mut answer_b = None;
        let answer_a = loop {
            match self.0[a].recv() {
                Reply::Paused => {
                    let (b, _, op) = inject.as_ref().unwrap();
                    answer_b = Some(self.0[*b].run(op));
                    self.0[a].send(&Request::Continue);
                }
                Reply::Answer(answer) => break answer,
                _ => break Err("the child answered out of turn".to_owned()),
            }
        };
        if answer_b.is_none() {
            if let Some((b, _, op)) = &inject {
                answer_b = Some(self.0[*b].run(op));
            }
        }
        (answer_a, answer_b)
    }

    fn observe(&mut self, i: usize) -> Result<Seen, String> {
        match self.0[i].request(&Request::Observe) {
            Reply::Seen(data, namespaces) => Ok((
                data?.into_iter().collect(),
                namespaces.into_iter().collect(),
            )),
            _ => Err("the child did not answer".to_owned()),
        }
    }

    fn verify(&mut self, i: usize) -> Result<(), String> {
        self.0[i].done(&Request::Verify)
    }

    fn close_all(&mut self) -> Result<(), String> {
        for remote in &mut self.0 {
            remote.done(&Request::Close)?;
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256) / 8))]

    #[test]
    fn handles_in_several_processes_on_postgres_behave_like_one_model(
        handles in 2..=3usize,
        steps in proptest::collection::vec(step(), 1..20),
    ) {
        if std::env::var(ENV_URL).is_ok() {
            return Ok(());
        }
        let Some(url) = support::postgres_test_url() else { return Ok(()) };
        let name = support::unique_name("model-processes");
        let backend: Arc<dyn Backend> = Arc::new(PostgresBackend::connect(&url, &name).unwrap());
        Vault::create_with_backend(Hooked::new(Arc::clone(&backend)), &raw(1))
            .unwrap()
            .close()
            .unwrap();
        let remotes = (0..handles).map(|_| Remote::spawn(&url, &name)).collect();
        let mut world = World::new(Arc::clone(&backend), Box::new(Processes(remotes)));
        for step in &steps {
            if let Err(e) = world.step(step) {
                panic!("{e}");
            }
        }
        if let Err(e) = world.finish() {
            panic!("{e}");
        }
        backend.close().unwrap();
    }
}
