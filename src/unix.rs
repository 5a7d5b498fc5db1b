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

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).ok().and_then(Pid::from_raw).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// Makes runner the reaper of orphans its tasks leave behind (Linux's
/// PR_SET_CHILD_SUBREAPER), so that a daemon a failed task started with
/// `setsid` can still be found. Whether it worked.
pub fn become_subreaper() -> bool {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_ok()
}

/// Runner's direct children: its own and the orphans it adopted.
fn children() -> Vec<i32> {
    let me = std::process::id();
    let list = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
    list.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Whether the environment of `pid` holds exactly the entry `tag`
/// (`NAME=value`).
fn environ_has(pid: i32, tag: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == tag))
}

/// SIGKILLs every adopted child whose environment carries `tag`, with its
/// process group. Returns how many there were.
pub fn kill_adopted(tag: &[u8]) -> usize {
    let mut n = 0;
    for pid in children() {
        if environ_has(pid, tag) {
            kill_group(pid, libc::SIGKILL);
            if let Some(p) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
            n += 1;
        }
    }
    n
}

/// Reaps the children that have exited, each by its pid — never
/// `waitpid(-1)`, so no child that std's `Child` still owns is taken.
/// Called only between jobs, when every std child has been waited for; at
/// most once a second, so that a chain of quick tasks does not pay a /proc
/// read per task for the rare adopted orphan.
pub fn reap_adopted() {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    if let Ok(mut last) = LAST.lock() {
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    for pid in children() {
        if let Some(p) = Pid::from_raw(pid) {
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
        }
    }
}
