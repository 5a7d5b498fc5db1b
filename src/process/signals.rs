//! Signals to runner (SPEC §5): SIGINT, SIGTERM and SIGHUP cancel the chain.
//!
//! A dedicated thread (signal-hook's iterator) receives them and only
//! records them — the first one is the cancellation, a second SIGINT asks
//! for an immediate kill — and rings a doorbell: a pipe whose read end the
//! supervision loop polls together with the child's pidfd and output pipes,
//! and that backoff sleeps and lock waits wait on. This module never
//! signals a child: stopping the running job is `process`'s escalation,
//! which reads [`cancelled`] and [`hurry`]. A signal ignored when runner
//! started stays ignored, as POSIX shells do.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signal that cancelled the chain; 0 while none has.
static CANCELLED: AtomicI32 = AtomicI32::new(0);
/// A second SIGINT came: kill the running job at once.
static HURRY: AtomicBool = AtomicBool::new(false);
/// The doorbell: (read end, write end), both non-blocking.
static DOORBELL: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();

/// Starts the signal thread. Signals that were ignored at start stay ignored.
pub fn install() -> std::io::Result<()> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)?;
    let _ = DOORBELL.set((read, write));
    let ignored = ignored_at_start();
    let wanted: Vec<i32> = [SIGINT, SIGTERM, SIGHUP].into_iter().filter(|s| !ignored.contains(s)).collect();
    let mut signals = signal_hook::iterator::Signals::new(&wanted)?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            on_signal(sig);
        }
    })?;
    Ok(())
}

/// The signals whose disposition was "ignore" when runner started, from
/// the kernel's `SigIgn` mask in `/proc/self/status`.
fn ignored_at_start() -> Vec<i32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    [SIGINT, SIGTERM, SIGHUP].into_iter().filter(|&s| mask & (1u64 << (s - 1)) != 0).collect()
}

fn on_signal(sig: i32) {
    let first = CANCELLED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok();
    if first {
        crate::logging::warn(&format!("received signal {sig}; stopping"));
    } else if sig == SIGINT {
        HURRY.store(true, Ordering::SeqCst);
    }
    if let Some((_, write)) = DOORBELL.get() {
        let _ = rustix::io::write(write, &[1]);
    }
}

/// The signal that cancelled the chain, if one did.
pub fn cancelled() -> Option<i32> {
    match CANCELLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Whether a second SIGINT asked to kill the running job at once.
pub fn hurry() -> bool {
    HURRY.load(Ordering::SeqCst)
}

/// The doorbell's read end, to poll with other descriptors; `None` when
/// signals are not handled (modes that run nothing).
pub fn doorbell() -> Option<BorrowedFd<'static>> {
    DOORBELL.get().map(|(read, _)| read.as_fd())
}

/// Empties the doorbell after it rang (what rang it is in the flags).
pub fn quiet_doorbell() {
    if let Some((read, _)) = DOORBELL.get() {
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(read, &mut buf), Ok(n) if n > 0) {}
    }
}

/// Sleeps for `d` unless runner is cancelled meanwhile. Returns the
/// cancelling signal, if any.
pub fn sleep(d: Duration) -> Option<i32> {
    let deadline = Instant::now() + d;
    loop {
        if let Some(sig) = cancelled() {
            return Some(sig);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let left = deadline - now;
        match doorbell() {
            Some(bell) => {
                let timeout = timespec(left);
                let mut fds = [PollFd::new(&bell, PollFlags::IN)];
                let _ = rustix::event::poll(&mut fds, Some(&timeout));
                quiet_doorbell();
            }
            None => std::thread::sleep(left),
        }
    }
}

/// A poll timeout of `d`, rounded up to whole milliseconds so that poll
/// never wakes early.
pub fn timespec(d: Duration) -> rustix::event::Timespec {
    let ms = d.as_nanos().div_ceil(1_000_000).min(i64::MAX as u128) as i64;
    rustix::event::Timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 }
}
