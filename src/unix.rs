//! Thin wrappers over the few OS calls runner makes directly.

use rustix::process::{Pid, Signal};

/// Sends `sig` to process group `group`; a group that is already gone is
/// not an error.
pub fn kill_group(group: i32, sig: i32) {
    let (Some(pid), Some(sig)) = (Pid::from_raw(group), signal(sig)) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, sig);
}

fn signal(sig: i32) -> Option<Signal> {
    match sig {
        libc::SIGTERM => Some(Signal::TERM),
        libc::SIGKILL => Some(Signal::KILL),
        _ => None,
    }
}
