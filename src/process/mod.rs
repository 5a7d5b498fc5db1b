//! Running one child process (a task, a hook, the halt task): its own
//! process group, stdin from /dev/null, killed with its group if runner
//! dies ([`watchdog`]), output forwarded line by line with a prefix (or
//! inherited with `--raw-output`), supervised until it ends.
//!
//! - [`supervise`]: the one SIGTERM → `kill_grace` → SIGKILL escalation, for
//!   `max_time` and for cancellation alike, and the loops that drive it.
//! - [`output`]: where output goes (terminal, log file) and the one thread
//!   that forwards output leftovers still hold after their job ended.
//!
//! No policy: what an exit means is `outcome`'s business; whether
//! leftovers die is the caller's ([`Finished::kill_leftovers`]).

mod exit;
pub mod os;
pub mod output;
pub mod signals;
pub mod supervise;
pub mod watchdog;

pub use exit::Exit;

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags};

pub use output::{LogSink, Sink, Stream, Terminal};

/// How long runner waits, after a child exits, for leftovers to release
/// its stdout and stderr before it moves on (not after a timeout or a
/// cancellation: then SIGKILL at `kill_grace` ends the wait).
pub const DRAIN: Duration = Duration::from_millis(250);

/// [`DRAIN`], or `RUNNER_DRAIN_MS` (a test override, so that a test can
/// leak output a thousand times quickly).
pub fn drain_time() -> Duration {
    static DRAIN_TIME: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *DRAIN_TIME.get_or_init(|| {
        std::env::var("RUNNER_DRAIN_MS").ok().and_then(|v| v.parse().ok()).map_or(DRAIN, Duration::from_millis)
    })
}

/// What to run and under which limits.
pub struct Job<'a> {
    /// Program and arguments.
    pub argv: Vec<OsString>,
    /// Variables added to runner's own environment.
    pub env: &'a [(OsString, OsString)],
    /// What the output lines are prefixed with (`[label] `).
    pub label: &'a str,
    /// What spawn errors name (the task's path).
    pub what: &'a str,
    pub max_time: Option<Duration>,
    /// What `max_time` is, for the message when it passes (`max_time`,
    /// `the run's deadline`).
    pub limit: &'static str,
    pub kill_grace: Duration,
    /// Inherit runner's stdout and stderr instead of capturing them.
    pub raw_output: bool,
    /// The task's log file, a second sink for its output.
    pub log: Option<&'a LogSink>,
    /// An environment entry (`NAME=value`) that marks the job's processes,
    /// so that ones that escaped its process group can be found.
    pub tag: Option<&'a [u8]>,
}

/// The finished child, and its process group, which may still hold
/// leftovers. Dropping it leaves them alone.
pub struct Finished {
    pub exit: Exit,
    /// Leftovers still held stdout/stderr after [`drain_time`].
    pub leaked_output: bool,
    group: i32,
    tag: Option<Vec<u8>>,
    kill_grace: Duration,
}

impl Finished {
    /// SIGKILLs whatever is left in the child's process group, then sweeps
    /// for processes that carry the job's tag but left the group (a daemon
    /// started with `setsid`), until none is left or `kill_grace` has
    /// passed: such a process may show up only when its parent dies.
    pub fn kill_leftovers(&self) {
        if self.group > 0 {
            os::kill_group(self.group, libc::SIGKILL);
        }
        let Some(tag) = &self.tag else { return };
        let until = Instant::now() + self.kill_grace;
        let mut escaped = std::collections::HashSet::new();
        loop {
            let found = os::kill_tagged(tag, self.group);
            escaped.extend(found.iter().copied());
            if found.is_empty() || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        os::reap_adopted(true);
        if !escaped.is_empty() {
            crate::logging::warn(&format!("killed {} process(es) that had escaped the process group", escaped.len()));
        }
    }
}

/// What runs jobs: the system (processes), or in tests a script of exits.
/// The chain runs every task, hook and halt task through one.
pub trait Spawner {
    /// Runs `job` to its end.
    fn run(&mut self, job: &Job) -> Finished;
}

/// Real processes.
pub struct System;

impl Spawner for System {
    fn run(&mut self, job: &Job) -> Finished {
        run(job)
    }
}

impl Finished {
    /// A job that ended as `exit` and left nothing behind (for spawners
    /// that run no process).
    pub fn of(exit: Exit) -> Finished {
        Finished { exit, leaked_output: false, group: 0, tag: None, kill_grace: Duration::ZERO }
    }
}

/// Runs `job` to its end. Never fails: a child that cannot be started is an
/// [`Exit::NotStarted`].
pub fn run(job: &Job) -> Finished {
    let started = Instant::now();
    // A child started after runner was cancelled (the post hook that reports
    // CANCELLED) is allowed to run; one started as the signal arrives is not.
    let cancelled_before = crate::process::signals::cancelled().is_some();
    let (out, err) =
        if job.raw_output { (Stdio::inherit(), Stdio::inherit()) } else { (Stdio::piped(), Stdio::piped()) };
    let mut cmd = Command::new(&job.argv[0]);
    cmd.args(&job.argv[1..]).envs(job.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(out).stderr(err);
    cmd.process_group(0);
    // Only runner talks to the service manager.
    cmd.env_remove("NOTIFY_SOCKET");
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let exit = Exit::NotStarted { reason: spawn_reason(job, &e), duration: started.elapsed() };
            return Finished { exit, leaked_output: false, group: 0, tag: None, kill_grace: job.kill_grace };
        }
    };
    let group = child.id() as i32;
    watchdog::guard(group, job.tag);
    let sinks = output::sinks(job);
    let mut esc = supervise::Escalation::new(group, job, !cancelled_before);
    let (status, leaked_output) = match pidfd(&child) {
        Some(pidfd) => supervise::poll_loop(&mut child, job, pidfd, sinks, &mut esc),
        None => supervise::threaded(&mut child, job, sinks, &mut esc),
    };
    let duration = started.elapsed();
    let exit = match status {
        Err(e) => Exit::WaitFailed { reason: format!("{}: waiting failed: {e}", job.what), duration },
        Ok(s) => esc.judge_status(s, duration),
    };
    watchdog::guard(0, None);
    // Every std child is waited for now: adopted orphans that exited can
    // be reaped by pid.
    os::reap_adopted(false);
    Finished { exit, leaked_output, group, tag: job.tag.map(<[u8]>::to_vec), kill_grace: job.kill_grace }
}

fn spawn_reason(job: &Job, e: &io::Error) -> String {
    let program = std::path::Path::new(&job.argv[0]);
    let target = if job.argv.len() > 1 {
        format!("interpreter {} for {}", program.display(), job.what)
    } else {
        job.what.to_string()
    };
    if e.kind() == io::ErrorKind::NotFound
        && let Ok(link) = std::fs::read_link(program)
    {
        return format!("cannot start {target}: broken symlink to {}", link.display());
    }
    format!("cannot start {target}: {e}")
}

/// A pidfd for the child, unless disabled (`RUNNER_NO_PIDFD`, for tests of
/// the fallback) or not supported (Linux before 5.3).
fn pidfd(child: &Child) -> Option<OwnedFd> {
    if std::env::var_os("RUNNER_NO_PIDFD").is_some() {
        return None;
    }
    let pid = Pid::from_raw(child.id() as i32)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}
