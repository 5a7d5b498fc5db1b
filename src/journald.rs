//! journald, natively: when runner's stderr is the journal (`JOURNAL_STREAM`
//! names it, as systemd sets it for a service), runner's own lines and every
//! line of its tasks go to the journal's native socket
//! (`/run/systemd/journal/socket`; `RUNNER_JOURNAL_SOCKET` names another,
//! for tests) as entries with a priority and the fields `RUNNER_TASK`,
//! `RUNNER_RUN_ID`, `RUNNER_TRY` and `RUNNER_ITERATION`, so that
//! `journalctl -u runner RUNNER_TASK=check-ami` shows one task's output
//! across boots. They are then not written to stdout or stderr (the journal
//! would get them twice), and `--syslog` is not used either. When the socket
//! cannot be reached, runner falls back to stderr with `<N>` priority
//! prefixes, which journald reads. Sends never block; a failed send is
//! dropped. This module knows nothing of tasks beyond the fields it is
//! given.

use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, OnceLock};

/// How runner talks to journald, decided once.
pub enum Journal {
    /// stderr is not the journal.
    Off,
    /// stderr is the journal and the native socket is reachable.
    Native(UnixDatagram),
    /// stderr is the journal, the socket is not: `<N>` prefixes on stderr.
    Prefixed,
}

static JOURNAL: OnceLock<Journal> = OnceLock::new();
/// The fields of the run (run id, iteration) and of the task running now
/// (task, try).
static CONTEXT: Mutex<Context> = Mutex::new(Context { run: None, task: None });

struct Context {
    run: Option<(String, u64)>,
    task: Option<(String, u32)>,
}

/// Whether `JOURNAL_STREAM` ("DEV:INODE") names runner's stderr.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(meta) = rustix::fs::fstat(std::io::stderr()) else { return false };
    stream.to_string_lossy() == format!("{}:{}", meta.st_dev, meta.st_ino)
}

/// How to log, decided at the first call.
pub fn mode() -> &'static Journal {
    JOURNAL.get_or_init(|| {
        if !stderr_is_journal() {
            return Journal::Off;
        }
        let path = std::env::var_os("RUNNER_JOURNAL_SOCKET").unwrap_or_else(|| "/run/systemd/journal/socket".into());
        match UnixDatagram::unbound().and_then(|s| s.connect(&path).and_then(|_| s.set_nonblocking(true)).map(|_| s)) {
            Ok(s) => Journal::Native(s),
            Err(_) => Journal::Prefixed,
        }
    })
}

/// Sets the fields of the run: every line from now on carries them.
pub fn set_run(run_id: &str, iteration: u64) {
    if !matches!(mode(), Journal::Off)
        && let Ok(mut c) = CONTEXT.lock()
    {
        c.run = Some((run_id.to_string(), iteration));
    }
}

/// Sets (or clears) the fields of the running task.
pub fn set_task(task: Option<(&str, u32)>) {
    if !matches!(mode(), Journal::Off)
        && let Ok(mut c) = CONTEXT.lock()
    {
        c.task = task.map(|(t, try_num)| (t.to_string(), try_num));
    }
}

/// Sends one line as a native entry with `priority` (syslog's 0–7).
/// Returns false when runner does not log natively (the caller writes the
/// line itself).
pub fn send(priority: u8, message: &[u8]) -> bool {
    let Journal::Native(sock) = mode() else { return false };
    let mut entry = Vec::with_capacity(message.len() + 200);
    entry.extend_from_slice(format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER=runner\n").as_bytes());
    if let Ok(c) = CONTEXT.lock() {
        if let Some((run, iteration)) = &c.run {
            entry.extend_from_slice(format!("RUNNER_RUN_ID={run}\nRUNNER_ITERATION={iteration}\n").as_bytes());
        }
        if let Some((task, try_num)) = &c.task {
            entry.extend_from_slice(format!("RUNNER_TASK={task}\nRUNNER_TRY={try_num}\n").as_bytes());
        }
    }
    // MESSAGE in the binary-safe form: name, newline, 64-bit length, data.
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    let message = &message[..message.len().min(48 * 1024)];
    entry.extend_from_slice(b"MESSAGE\n");
    entry.extend_from_slice(&(message.len() as u64).to_le_bytes());
    entry.extend_from_slice(message);
    entry.push(b'\n');
    let _ = sock.send(&entry);
    true
}
