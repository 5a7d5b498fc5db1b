//! The one error type of runner and the exit codes it maps to.
//!
//! Every way runner can end is a named constant here; `main` turns an
//! [`Error`] into one line on stderr and its code.

use std::fmt;

/// Exit codes of runner (SPEC §1). Codes 1/2/3 mirror the task protocol so a
/// runner can itself be a task of another runner.
pub mod code {
    /// Every iteration completed; `-g` answered; `--check` found no error.
    pub const OK: i32 = 0;
    /// A task kept failing until `max_tries`; the halt task was run.
    pub const GAVE_UP: i32 = 1;
    /// A task exited 2; the halt task was run.
    pub const HALTED: i32 = 2;
    /// A task exited 3; stopped without the halt task.
    pub const STOPPED: i32 = 3;
    /// A task asked for a reboot (`reboot_now_exit`, `reboot_later_exit`):
    /// the run waits for it, and the reboot task was run (or there is none,
    /// and a wrapper is to reboot). `--resume` after the reboot goes on.
    pub const REBOOT: i32 = 4;
    /// Bad command line.
    pub const USAGE: i32 = 64;
    /// A bug in runner itself (EX_SOFTWARE).
    pub const INTERNAL: i32 = 70;
    /// The state directory cannot be created, read, written or locked
    /// (EX_IOERR).
    pub const STATE_IO: i32 = 74;
    /// Another runner holds this chain's lock (EX_TEMPFAIL).
    pub const LOCKED: i32 = 75;
    /// As root, the state directory (or a parent) could be steered by
    /// another user (EX_NOPERM).
    pub const UNSAFE_STATE: i32 = 77;
    /// Unreadable or malformed configuration, bad value, missing TASKDIR,
    /// dependency cycle, insecure permissions.
    pub const CONFIG: i32 = 78;
    /// Stopped by signal N exits `SIGNAL_BASE + N`.
    pub const SIGNAL_BASE: i32 = 128;
}

/// Everything that makes runner stop before or outside the task protocol.
#[derive(Debug)]
pub enum Error {
    /// Configuration problems, each already formatted as one line
    /// (`file:line: message`).
    Config(Vec<String>),
    /// Bad command line.
    Usage(String),
    /// The chain lock is held by someone else.
    Locked(String),
    /// Stopped by this signal before the chain ran (waiting for the lock).
    Cancelled(i32),
    /// The state directory cannot be created, read, written or locked: one
    /// line naming the path and the OS error.
    State(String),
    /// As root, the state directory could be steered by another user.
    Unsafe(String),
    /// A bug, or an OS facility runner cannot do without.
    Internal(anyhow::Error),
}

impl Error {
    pub fn config(msg: impl Into<String>) -> Error {
        Error::Config(vec![msg.into()])
    }

    /// The exit code this error ends runner with.
    pub fn code(&self) -> i32 {
        match self {
            Error::Config(_) => code::CONFIG,
            Error::Usage(_) => code::USAGE,
            Error::Locked(_) => code::LOCKED,
            Error::Cancelled(sig) => code::SIGNAL_BASE + sig,
            Error::State(_) => code::STATE_IO,
            Error::Unsafe(_) => code::UNSAFE_STATE,
            Error::Internal(_) => code::INTERNAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(lines) => write!(f, "{}", lines.join("\nrunner: error: ")),
            Error::Usage(m) | Error::Locked(m) | Error::State(m) | Error::Unsafe(m) => write!(f, "{m}"),
            Error::Cancelled(sig) => write!(f, "stopped by signal {sig} while waiting for the chain lock"),
            Error::Internal(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        Error::Internal(e)
    }
}

/// One problem: where (`file:line`, a path, or nothing) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub at: String,
    pub msg: String,
}

impl Diag {
    pub fn new(at: impl ToString, msg: impl Into<String>) -> Diag {
        Diag { at: at.to_string(), msg: msg.into() }
    }

    /// `at: severity: msg`, as `--check` prints it.
    pub fn with_severity(&self, severity: &str) -> String {
        if self.at.is_empty() {
            format!("{severity}: {}", self.msg)
        } else {
            format!("{}: {severity}: {}", self.at, self.msg)
        }
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() { write!(f, "{}", self.msg) } else { write!(f, "{}: {}", self.at, self.msg) }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Problems found while validating, each one line.
#[derive(Debug, Default)]
pub struct Diags {
    pub errors: Vec<Diag>,
    pub warnings: Vec<Diag>,
}

impl Diags {
    pub fn error(&mut self, at: impl ToString, msg: impl Into<String>) {
        self.errors.push(Diag { at: at.to_string(), msg: msg.into() });
    }

    pub fn warn(&mut self, at: impl ToString, msg: impl Into<String>) {
        self.warnings.push(Diag { at: at.to_string(), msg: msg.into() });
    }

    /// The errors as runner's configuration error (exit 78).
    pub fn to_error(&self) -> Error {
        Error::Config(self.errors.iter().map(Diag::to_string).collect())
    }
}
