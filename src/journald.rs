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
/// The fields of the task running now: (task, run id, try, iteration).
static CONTEXT: Mutex<Option<[String; 4]>> = Mutex::new(None);

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

/// Sets (or clears) the fields of the running task.
pub fn set_task(task: Option<(&str, &str, u32, u64)>) {
    if matches!(mode(), Journal::Off) {
        return;
    }
    if let Ok(mut c) = CONTEXT.lock() {
        *c = task.map(|(t, r, try_num, it)| [t.to_string(), r.to_string(), try_num.to_string(), it.to_string()]);
    }
}

/// Sends one line as a native entry with `priority` (syslog's 0–7).
/// Returns false when runner does not log natively (the caller writes the
/// line itself).
pub fn send(priority: u8, message: &[u8]) -> bool {
    let Journal::Native(sock) = mode() else { return false };
    let mut entry = Vec::with_capacity(message.len() + 200);
    entry.extend_from_slice(format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER=runner\n").as_bytes());
    if let Ok(c) = CONTEXT.lock()
        && let Some([task, run, try_num, it]) = c.as_ref()
    {
        for (k, v) in [("RUNNER_TASK", task), ("RUNNER_RUN_ID", run), ("RUNNER_TRY", try_num), ("RUNNER_ITERATION", it)]
        {
            entry.extend_from_slice(format!("{k}={v}\n").as_bytes());
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
