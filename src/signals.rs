//! Signals to runner (SPEC §5): SIGINT, SIGTERM and SIGHUP cancel the chain.
//!
//! A dedicated thread (signal-hook) receives them. The first one is recorded
//! as the cancellation, SIGTERM goes at once to the process group of the
//! running child (task, hook or halt task), SIGKILL follows after that
//! child's `kill_grace`, and any backoff sleep wakes. A second SIGINT sends
//! SIGKILL at once. The main thread only asks [`cancelled`] and sleeps with
//! [`sleep`]; it never blocks signals, so child reaping (wait-timeout's
//! SIGCHLD handler) is untouched. A signal ignored when runner started stays
//! ignored, as POSIX shells do.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signal that cancelled the chain; 0 while none has.
static CANCELLED: AtomicI32 = AtomicI32::new(0);
/// Process group of the running child; 0 while none runs.
static GROUP: AtomicI32 = AtomicI32::new(0);
/// That child's kill_grace in milliseconds.
static GRACE_MS: AtomicU64 = AtomicU64::new(0);
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// Starts the signal thread. Signals that were ignored at start stay ignored.
pub fn install() -> std::io::Result<()> {
    let wanted: Vec<i32> = [SIGINT, SIGTERM, SIGHUP].into_iter().filter(|&s| !ignored_at_start(s)).collect();
    let mut signals = signal_hook::iterator::Signals::new(&wanted)?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            on_signal(sig);
        }
    })?;
    Ok(())
}

fn ignored_at_start(sig: i32) -> bool {
    // SAFETY: a null new action only reads the current disposition into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

fn on_signal(sig: i32) {
    let first = CANCELLED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok();
    let group = GROUP.load(Ordering::SeqCst);
    if first {
        crate::logging::warn(&format!("received signal {sig}; stopping"));
        if group > 0 {
            crate::unix::kill_group(group, libc::SIGTERM);
            let grace = Duration::from_millis(GRACE_MS.load(Ordering::SeqCst));
            std::thread::spawn(move || {
                std::thread::sleep(grace);
                if GROUP.load(Ordering::SeqCst) == group {
                    crate::unix::kill_group(group, libc::SIGKILL);
                }
            });
        }
        let _guard = WAKE.0.lock();
        WAKE.1.notify_all();
    } else if sig == SIGINT && group > 0 {
        crate::unix::kill_group(group, libc::SIGKILL);
    }
}

/// The signal that cancelled the chain, if one did.
pub fn cancelled() -> Option<i32> {
    match CANCELLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Registers the running child's process group (0: none) so that a signal
/// reaches it. Returns whether runner is already cancelled, in which case
/// the caller stops the child itself.
pub fn set_group(group: i32, grace: Duration) -> bool {
    GRACE_MS.store(grace.as_millis().min(u64::MAX as u128) as u64, Ordering::SeqCst);
    GROUP.store(group, Ordering::SeqCst);
    cancelled().is_some()
}

/// Sleeps for `d` unless runner is cancelled meanwhile. Returns the
/// cancelling signal, if any.
pub fn sleep(d: Duration) -> Option<i32> {
    let deadline = Instant::now() + d;
    let Ok(mut guard) = WAKE.0.lock() else {
        return cancelled();
    };
    loop {
        if let Some(sig) = cancelled() {
            return Some(sig);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        guard = match WAKE.1.wait_timeout(guard, deadline - now) {
            Ok((g, _)) => g,
            Err(_) => return cancelled(),
        };
    }
}
