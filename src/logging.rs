//! Runner's own messages: levels (`-v`, `-q`), stderr, and `--syslog`. Not
//! task output (that is `process::output`'s), and never an `[env]` value.
//!
//! Each message is one line `runner: [level: ]text` on stderr. With
//! `--syslog` it also goes to the local syslog socket (`/dev/log`, or the
//! path in `RUNNER_SYSLOG_SOCKET`) as facility daemon, sent without
//! blocking: when the syslog reader stops reading, lines are dropped and
//! counted (a warning on stderr at the first, the count at exit), never
//! waited for. Write errors are ignored: a closed stderr must never stop a
//! chain.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static SYSLOG: OnceLock<Option<UnixDatagram>> = OnceLock::new();
/// Syslog lines dropped because the reader did not keep up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Sets the level and opens the syslog socket when asked for.
pub fn init(level: Level, syslog: bool) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    // Under journald, the journal has every line already: no syslog copy.
    let journald = !matches!(crate::journald::mode(), crate::journald::Journal::Off);
    if syslog && !journald {
        let path = std::env::var_os("RUNNER_SYSLOG_SOCKET").unwrap_or_else(|| "/dev/log".into());
        let sock =
            UnixDatagram::unbound().and_then(|s| s.connect(&path).and_then(|_| s.set_nonblocking(true)).map(|_| s));
        let opened = match sock {
            Ok(s) => Some(s),
            Err(e) => {
                let _ = SYSLOG.set(None);
                warn(&format!("--syslog: cannot connect to {}: {e}", std::path::Path::new(&path).display()));
                return;
            }
        };
        let _ = SYSLOG.set(opened);
    }
}

fn emit(level: Level, text: &str) {
    if level as u8 > LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
    };
    let severity = match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug => 7,
    };
    match crate::journald::mode() {
        crate::journald::Journal::Native(_) => {
            crate::journald::send(severity, format!("runner: {tag}{text}").as_bytes());
        }
        crate::journald::Journal::Prefixed => {
            let _ = writeln!(std::io::stderr().lock(), "<{severity}>runner: {tag}{text}");
        }
        crate::journald::Journal::Off => {
            let _ = writeln!(std::io::stderr().lock(), "runner: {tag}{text}");
        }
    }
    if let Some(Some(sock)) = SYSLOG.get() {
        let msg = format!("<{}>runner[{}]: {tag}{text}", 3 * 8 + severity, std::process::id());
        if let Err(e) = sock.send(msg.as_bytes())
            && e.kind() == std::io::ErrorKind::WouldBlock
            && DROPPED.fetch_add(1, Ordering::Relaxed) == 0
        {
            let _ = writeln!(
                std::io::stderr().lock(),
                "runner: warning: --syslog: the syslog reader is not reading; dropping lines (counted at exit)"
            );
        }
    }
}

/// Reports, once, how many syslog lines were dropped.
pub fn finish() {
    let n = DROPPED.swap(0, Ordering::Relaxed);
    if n > 0 {
        let _ = writeln!(
            std::io::stderr().lock(),
            "runner: warning: --syslog: {n} line(s) dropped; the syslog reader was not reading"
        );
    }
}

pub fn error(text: &str) {
    emit(Level::Error, text);
}
pub fn warn(text: &str) {
    emit(Level::Warn, text);
}
pub fn info(text: &str) {
    emit(Level::Info, text);
}
pub fn debug(text: &str) {
    emit(Level::Debug, text);
}

/// Whether messages of `level` are shown: callers on the per-task path
/// skip formatting a message nobody will see.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}
