//! The watchdog: a second runner process (`runner --watchdog`, started once
//! per run) that kills the running job's process group when runner dies
//! without cleaning up (`kill -9`, the OOM killer), so a task never runs on
//! beside the retry a `--resume` starts.
//!
//! Runner tells it, through a pipe, which group runs now ("PGID TAG\n", or
//! "0\n" when none does). When the pipe closes — runner exited, however it
//! died — and a group was running, the watchdog SIGKILLs that group and the
//! processes carrying the job's tag, then exits. It lives in its own
//! process group, so a Ctrl-C meant for runner does not reach it.
//!
//! Why not the kernel's parent-death signal: it needs a hook in the forked
//! child before exec, which makes std fork instead of posix_spawn (about
//! 0.3 ms more per task on this machine, a third of a quick task's cost),
//! and it would reach only the group's leader, not the whole group.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The pipe to the watchdog, when one runs.
static PIPE: Mutex<Option<ChildStdin>> = Mutex::new(None);

/// Starts the watchdog for this run. Without one (no executable path, a
/// spawn error), a killed runner's job is left to `--resume`, which kills
/// what carries the interrupted attempt's key, and to the service
/// manager.
pub fn start() {
    let spawned = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .arg("--watchdog")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
    });
    match spawned {
        Ok(mut child) => {
            if let Ok(mut pipe) = PIPE.lock() {
                *pipe = child.stdin.take();
            }
            // Reaped with the other adopted children; it exits when runner does.
            drop(child);
        }
        Err(e) => crate::logging::debug(&format!("no watchdog ({e}); a killed runner's task is killed at --resume")),
    }
}

/// Tells the watchdog that `group` (tagged `tag`) runs now; 0 for none.
pub fn guard(group: i32, tag: Option<&[u8]>) {
    let Ok(mut pipe) = PIPE.lock() else { return };
    let Some(p) = pipe.as_mut() else { return };
    let mut line = group.to_string().into_bytes();
    if let Some(tag) = tag {
        line.push(b' ');
        line.extend_from_slice(tag);
    }
    line.push(b'\n');
    if p.write_all(&line).is_err() {
        // The watchdog is gone: go on without it.
        *pipe = None;
    }
}

/// `runner --watchdog`: reads "PGID [TAG]" lines until end of file, then
/// kills what was running. Returns the exit code.
pub fn serve() -> i32 {
    let stdin = std::io::stdin().lock();
    let mut current: (i32, Vec<u8>) = (0, Vec::new());
    for line in stdin.split(b'\n') {
        let Ok(line) = line else { break };
        let (pgid, tag) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], line[i + 1..].to_vec()),
            None => (&line[..], Vec::new()),
        };
        current = (std::str::from_utf8(pgid).ok().and_then(|s| s.parse().ok()).unwrap_or(0), tag);
    }
    let (group, tag) = current;
    if group > 0 {
        crate::process::os::kill_group(group, libc::SIGKILL);
        if !tag.is_empty() {
            crate::process::os::kill_tagged(&tag, group);
        }
    }
    0
}
