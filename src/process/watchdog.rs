//! The watchdog: a second runner process (`runner --watchdog`, started once
//! per run) that kills the running job's process group when runner dies
//! without cleaning up (`kill -9`, the OOM killer), so a task never runs on
//! beside the retry a `--resume` starts.
//!
//! Runner writes which group runs now ("PGID TAG\n", or "0\n" when none
//! does) at the start of a small shared memory file the watchdog holds as
//! its stdout — one `pwrite` per job start and end, which wakes nobody.
//! The watchdog only waits for its stdin, a pipe from runner, to close:
//! when runner exits, however it died, it reads the shared file, and if a
//! group was running SIGKILLs it and the processes carrying the job's tag,
//! then exits. It lives in its own process group, so a Ctrl-C meant for
//! runner does not reach it.
//!
//! Why not the kernel's parent-death signal: it needs a hook in the forked
//! child before exec, which makes std fork instead of posix_spawn (about
//! 0.3 ms more per task on this machine, a third of a quick task's cost),
//! and it would reach only the group's leader, not the whole group.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The shared file and the pipe whose end tells the watchdog runner is gone.
struct Watch {
    shared: File,
    _pipe: ChildStdin,
}

static WATCH: Mutex<Option<Watch>> = Mutex::new(None);

/// Room for "PGID TAG\n": a pid and `RUNNER_ATTEMPT_KEY=` plus a key.
const SLOT: usize = 128;

/// Starts the watchdog for this run. Without one (no executable path, no
/// memfd, a spawn error), a killed runner's job is left to `--resume`,
/// which kills what carries the interrupted attempt's key, and to the
/// service manager.
pub fn start() {
    let started = (|| -> std::io::Result<Watch> {
        let fd = rustix::fs::memfd_create("runner-watchdog", rustix::fs::MemfdFlags::CLOEXEC)?;
        let shared = File::from(fd);
        shared.set_len(SLOT as u64)?;
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--watchdog")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(shared.try_clone()?))
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take().ok_or_else(|| std::io::Error::other("no pipe"))?;
        Ok(Watch { shared, _pipe: pipe })
    })();
    match started {
        Ok(w) => {
            if let Ok(mut watch) = WATCH.lock() {
                *watch = Some(w);
            }
        }
        Err(e) => crate::logging::debug(&format!("no watchdog ({e}); a killed runner's task is killed at --resume")),
    }
}

/// Tells the watchdog that `group` (tagged `tag`) runs now; 0 for none.
pub fn guard(group: i32, tag: Option<&[u8]>) {
    let Ok(watch) = WATCH.lock() else { return };
    let Some(w) = watch.as_ref() else { return };
    let mut slot = [b' '; SLOT];
    let mut line = group.to_string().into_bytes();
    if let Some(tag) = tag.filter(|t| line.len() + 2 + t.len() <= SLOT) {
        line.push(b' ');
        line.extend_from_slice(tag);
    }
    line.push(b'\n');
    slot[..line.len()].copy_from_slice(&line);
    let _ = rustix::io::pwrite(&w.shared, &slot, 0);
}

/// `runner --watchdog`: waits for stdin to close, then kills what runner
/// said was running. Returns the exit code.
pub fn serve() -> i32 {
    let mut sink = Vec::new();
    // Runner never writes to the pipe: this returns when runner is gone.
    let _ = std::io::stdin().lock().read_to_end(&mut sink);
    use std::os::fd::AsFd;
    // The shared file is the watchdog's stdout.
    let Ok(shared) = std::io::stdout().as_fd().try_clone_to_owned().map(File::from) else { return 0 };
    let mut slot = [0u8; SLOT];
    let n = std::os::unix::fs::FileExt::read_at(&shared, &mut slot, 0).unwrap_or(0);
    let line = slot[..n].split(|&b| b == b'\n').next().unwrap_or_default();
    let (pgid, tag) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    let group: i32 = std::str::from_utf8(pgid).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    if group > 0 {
        super::os::kill_group(group, libc::SIGKILL);
        if !tag.is_empty() {
            super::os::kill_tagged(tag, group);
        }
    }
    0
}
