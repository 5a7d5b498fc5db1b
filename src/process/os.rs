//! Thin wrappers over the few OS calls runner makes directly (process
//! groups, /proc, the subreaper). No policy: callers decide what to kill.

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

/// The process group of `pid`.
fn pgid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// SIGKILLs every process (that runner may signal) whose environment
/// carries `tag`, with its process group. Returns the pids of those that
/// were outside `group` (escaped it); members of `group` are dying already.
pub fn kill_tagged(tag: &[u8], group: i32) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut escaped = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return escaped };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if pid == me || !environ_has(pid, tag) {
            continue;
        }
        let their_group = pgid(pid);
        let mine = rustix::process::getpgrp().as_raw_nonzero().get();
        if let Some(g) = their_group.filter(|&g| g > 1 && g != me && g != mine) {
            kill_group(g, libc::SIGKILL);
        }
        if let Some(p) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, Signal::KILL);
        }
        if their_group != Some(group) {
            escaped.push(pid);
        }
    }
    escaped
}

/// Reaps the children that have exited, each by its pid — never
/// `waitpid(-1)`, so no child that std's `Child` still owns is taken.
/// Called only between jobs, when every std child has been waited for;
/// unless `now`, at most once a second, so that a chain of quick tasks does
/// not pay a /proc read per task for the rare adopted orphan.
pub fn reap_adopted(now: bool) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    if let Ok(mut last) = LAST.lock() {
        if !now && last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
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

/// Polls the descriptors given (a `None` is not polled: a closed pipe would
/// report POLLHUP forever and turn a wait into a busy loop) until one is
/// ready or the timeout passes. Which are ready; none after an interrupt.
pub fn poll_ready<const N: usize>(
    fds: [Option<std::os::fd::BorrowedFd<'_>>; N],
    timeout: Option<&rustix::event::Timespec>,
) -> std::io::Result<[bool; N]> {
    use rustix::event::{PollFd, PollFlags};
    let mut polled: Vec<PollFd> = Vec::with_capacity(N);
    let mut slots: Vec<usize> = Vec::with_capacity(N);
    for (i, fd) in fds.iter().enumerate() {
        if let Some(fd) = fd {
            polled.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
            slots.push(i);
        }
    }
    let mut ready = [false; N];
    match rustix::event::poll(&mut polled, timeout) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(ready),
        Err(e) => return Err(e.into()),
    }
    for (fd, &slot) in polled.iter().zip(&slots) {
        ready[slot] = !fd.revents().is_empty();
    }
    Ok(ready)
}
