//! sd_notify(3): when runner runs as a systemd service with `NOTIFY_SOCKET`
//! set, it sends `READY=1` when the chain starts and a `STATUS=` line as it
//! goes (`task 3/12 check-ami (try 2 of 5)`, `sleeping 12 s before try 3 of
//! check-ami`, `halting (check-ami exited 2)`, the final summary), so that
//! `systemctl status runner` shows where the chain is. Without the socket
//! nothing is sent. A failure to send is ignored: it never changes the
//! chain. Tasks do not inherit `NOTIFY_SOCKET` (see `process`).

use sd_notify::NotifyState;

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub fn listening() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// The chain starts.
pub fn ready(status: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
}

/// Where the chain is now.
pub fn status(text: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[NotifyState::Status(text)]);
    }
}
