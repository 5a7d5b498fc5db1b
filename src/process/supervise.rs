//! Supervising a running child: the one escalation and the two loops that
//! drive it.
//!
//! [`Escalation`] is the only code that signals a running job: SIGTERM to
//! its process group when `max_time` passes or runner is cancelled,
//! SIGKILL `kill_grace` later (at once after a second SIGINT) — to the
//! group, so a leftover that ignores SIGTERM and holds the output dies at
//! the deadline too, even after the leader exited. [`poll_loop`] (Linux
//! 5.3+) polls the child's pipes, its pidfd and the signal doorbell on one
//! thread; [`threaded`] is the fallback (an output thread and
//! wait-timeout, in slices short enough to notice a signal). Neither
//! decides what an exit means.

use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use super::output::{self, Sink, Stream};
use super::{Exit, os, signals};
use super::{Job, drain_time};

/// The size asked for a task's stdout pipe (the default is 64 KiB).
const PIPE_SIZE: usize = 1 << 20;

/// How long the fallback waits at most before looking at the signal flags.
const FALLBACK_SLICE: Duration = Duration::from_millis(20);

/// The SIGTERM → `kill_grace` → SIGKILL escalation of one process group.
pub struct Escalation {
    group: i32,
    label: String,
    limit: &'static str,
    grace: Duration,
    /// When `max_time` passes.
    deadline: Option<Instant>,
    /// Whether runner's cancellation stops this job (not for a job started
    /// after it: the post hook that reports CANCELLED).
    honours_cancel: bool,
    /// SIGTERM went out; SIGKILL is due then.
    kill_at: Option<Instant>,
    killed: bool,
    timed_out: bool,
    /// The signal that cancelled runner while this job ran.
    cancelled_by: Option<i32>,
}

impl Escalation {
    pub fn new(group: i32, job: &Job, honours_cancel: bool) -> Escalation {
        Escalation {
            group,
            label: job.label.to_string(),
            limit: job.limit,
            grace: job.kill_grace,
            deadline: job.max_time.map(|t| Instant::now() + t),
            honours_cancel,
            kill_at: None,
            killed: false,
            timed_out: false,
            cancelled_by: None,
        }
    }

    /// Sends what is due at `now`.
    pub fn step(&mut self, now: Instant) {
        if self.kill_at.is_none() && !self.killed {
            if let Some(sig) = signals::cancelled().filter(|_| self.honours_cancel) {
                self.cancelled_by = Some(sig);
                self.term(now);
            } else if self.deadline.is_some_and(|d| now >= d) {
                self.timed_out = true;
                crate::logging::warn(&format!("{}: exceeded {}; sending SIGTERM", self.label, self.limit));
                self.term(now);
            }
        }
        if self.killed {
            return;
        }
        if signals::hurry() {
            self.kill("second SIGINT");
        } else if self.kill_at.is_some_and(|k| now >= k) {
            self.kill("still running after kill_grace");
        }
    }

    fn term(&mut self, now: Instant) {
        os::kill_group(self.group, libc::SIGTERM);
        self.kill_at = Some(now + self.grace);
    }

    fn kill(&mut self, why: &str) {
        crate::logging::warn(&format!("{}: {why}; sending SIGKILL", self.label));
        os::kill_group(self.group, libc::SIGKILL);
        self.killed = true;
    }

    /// The leader was reaped: no new escalation starts (a job that exited
    /// before `max_time` did not time out while its leftovers drained); one
    /// under way still ends in SIGKILL at its deadline.
    pub fn leader_exited(&mut self) {
        self.deadline = None;
        self.honours_cancel = false;
    }

    /// SIGTERM went out and SIGKILL has not yet.
    pub fn pending(&self) -> bool {
        self.kill_at.is_some() && !self.killed
    }

    /// The next instant something is due.
    pub fn next(&self) -> Option<Instant> {
        if self.killed {
            None
        } else if self.kill_at.is_some() {
            self.kill_at
        } else {
            self.deadline
        }
    }

    /// The [`Exit`] of a reaped child, given what the escalation did.
    pub fn judge_status(&self, status: ExitStatus, duration: Duration) -> Exit {
        let (code, signal) = (status.code(), status.signal());
        if let Some(by) = self.cancelled_by {
            return Exit::Cancelled { by, code, signal, duration };
        }
        if self.timed_out {
            return Exit::TimedOut { code, signal, duration };
        }
        match (code, signal) {
            (Some(code), _) => Exit::Exited { code, duration },
            (None, Some(signal)) => Exit::Signalled { signal, duration },
            (None, None) => Exit::WaitFailed { reason: format!("{}: unknown wait status", self.label), duration },
        }
    }
}

/// The supervision loop on one thread: poll the child's stdout, stderr,
/// pidfd and the signal doorbell, with the escalation's next deadline (or
/// the output drain) as timeout. No thread per task, no SIGCHLD, and
/// deadlines are met to the millisecond. Returns the status, and whether
/// leftovers still held the output after the drain (the shared drain then
/// keeps forwarding it).
pub fn poll_loop(
    child: &mut Child,
    job: &Job,
    pidfd: OwnedFd,
    mut sinks: Vec<Box<dyn Sink>>,
    esc: &mut Escalation,
) -> (io::Result<ExitStatus>, bool) {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    // A larger pipe: a task that prints a lot is read in fewer, larger
    // chunks (fewer wake-ups on both sides). Best effort.
    if let Some(o) = &out {
        let _ = rustix::pipe::fcntl_setpipe_size(o, PIPE_SIZE);
    }
    let mut buf = output::take_buffer();
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        esc.step(now);
        if let Some(s) = &status
            && s.is_ok()
            && drain_until.is_none()
            && !esc.pending()
        {
            drain_until = Some(now + drain_time());
        }
        if status.is_some() && out.is_none() && err.is_none() {
            break;
        }
        if drain_until.is_some_and(|d| now >= d) || status.as_ref().is_some_and(|s| s.is_err()) {
            break;
        }
        let next = [esc.next(), drain_until].into_iter().flatten().min();
        let timeout = next.map(|n| signals::timespec(n.saturating_duration_since(Instant::now())));
        let ready = match os::poll_ready(
            [
                out.as_ref().map(AsFd::as_fd),
                err.as_ref().map(AsFd::as_fd),
                status.is_none().then(|| pidfd.as_fd()),
                signals::doorbell(),
            ],
            timeout.as_ref(),
        ) {
            Ok(r) => r,
            Err(_) => break,
        };
        if ready[3] {
            signals::quiet_doorbell();
        }
        if ready[0]
            && let Some(o) = &mut out
            && !output::forward_chunk(o as &mut dyn Read, Stream::Out, &mut buf, &mut sinks)
        {
            out = None;
        }
        if ready[1]
            && let Some(e) = &mut err
            && !output::forward_chunk(e as &mut dyn Read, Stream::Err, &mut buf, &mut sinks)
        {
            err = None;
        }
        if ready[2] && status.is_none() {
            status = Some(child.wait());
            esc.leader_exited();
        }
    }
    output::give_buffer(buf);
    let leaked = out.is_some() || err.is_some();
    if leaked {
        output::leak(job.label, out, err, sinks);
    } else {
        sinks.iter_mut().for_each(|s| s.finish());
    }
    let status = status.unwrap_or_else(|| child.wait());
    (status, leaked)
}

/// The fallback without pidfd: an output thread, and wait-timeout in short
/// slices, driving the same escalation.
pub fn threaded(
    child: &mut Child,
    job: &Job,
    sinks: Vec<Box<dyn Sink>>,
    esc: &mut Escalation,
) -> (io::Result<ExitStatus>, bool) {
    let (drained, handoff) = output::forward_in_thread(child, job, sinks);
    let status = loop {
        let now = Instant::now();
        esc.step(now);
        let slice = esc.next().map_or(FALLBACK_SLICE, |n| n.saturating_duration_since(now).min(FALLBACK_SLICE));
        match child.wait_timeout(slice) {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    esc.leader_exited();
    // Leftovers of a stopped job: SIGKILL at the deadline, unless the
    // output closes first.
    while esc.pending() {
        let now = Instant::now();
        esc.step(now);
        let slice = esc.next().map_or(FALLBACK_SLICE, |n| n.saturating_duration_since(now).min(FALLBACK_SLICE));
        if drained.recv_timeout(slice).is_ok() {
            handoff.join();
            return (status, false);
        }
    }
    let leaked = drained.recv_timeout(drain_time()).is_err();
    if leaked {
        handoff.now();
    } else {
        handoff.join();
    }
    (status, leaked)
}
