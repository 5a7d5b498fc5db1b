//! How a child process ended, as data: [`Exit`], built once by `process`
//! when the child is reaped. What it means for the chain is
//! `chain::outcome`'s business, not this module's.

use std::time::Duration;

/// How a child process ended, as data: built once by `process` when the
/// child is reaped, judged here, rendered by [`Exit::describe`]. Only what
/// can really happen can be said.
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    /// It exited with this code.
    Exited { code: i32, duration: Duration },
    /// A signal it was not sent by runner's escalation ended it.
    Signalled { signal: i32, duration: Duration },
    /// It passed `max_time` and runner stopped it; how it ended then.
    TimedOut { code: Option<i32>, signal: Option<i32>, duration: Duration },
    /// Runner was stopped by signal `by` while it ran (or before it
    /// started); how it ended then.
    Cancelled { by: i32, code: Option<i32>, signal: Option<i32>, duration: Duration },
    /// It could not be started; the reason names the file.
    NotStarted { reason: String, duration: Duration },
    /// Runner could not wait for it.
    WaitFailed { reason: String, duration: Duration },
}

impl Exit {
    /// The exit code, when it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            Exit::Exited { code, .. } => Some(*code),
            Exit::TimedOut { code, .. } | Exit::Cancelled { code, .. } => *code,
            _ => None,
        }
    }

    /// The signal that ended it, when one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Exit::Signalled { signal, .. } => Some(*signal),
            Exit::TimedOut { signal, .. } | Exit::Cancelled { signal, .. } => *signal,
            _ => None,
        }
    }

    pub fn timed_out(&self) -> bool {
        matches!(self, Exit::TimedOut { .. })
    }

    pub fn duration(&self) -> Duration {
        match self {
            Exit::Exited { duration, .. }
            | Exit::Signalled { duration, .. }
            | Exit::TimedOut { duration, .. }
            | Exit::Cancelled { duration, .. }
            | Exit::NotStarted { duration, .. }
            | Exit::WaitFailed { duration, .. } => *duration,
        }
    }

    /// How it ended, in words: `exit 1 after 0.004 s`, `timed out after
    /// 30.001 s`, `cannot start …`. The one rendering for log lines, the
    /// status and the halt message.
    pub fn describe(&self) -> String {
        let secs = self.duration().as_secs_f64();
        match self {
            Exit::Exited { code, .. } => format!("exit {code} after {secs:.3} s"),
            Exit::Signalled { signal, .. } => format!("killed by signal {signal} after {secs:.3} s"),
            Exit::TimedOut { .. } => format!("timed out after {secs:.3} s"),
            Exit::Cancelled { by, .. } => format!("cancelled by signal {by} after {secs:.3} s"),
            Exit::NotStarted { reason, .. } | Exit::WaitFailed { reason, .. } => reason.clone(),
        }
    }
}
