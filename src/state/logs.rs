//! Per-run log folders: `state_dir/logs/<run id>/<task file>.log`, created
//! 0700 (files 0600) without following symlinks, and pruning to the newest
//! `keep_logs` runs. Pruning removes only folders whose names are run ids
//! runner made; anything else in `logs/` is left alone.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags};

use super::dir::{StateDir, subdir};

pub const LOGS_DIR: &str = "logs";

/// The log folder of one run.
pub struct LogDir {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl LogDir {
    /// Creates the folder of `run_id` under `logs/` and prunes older ones
    /// beyond `keep` (the current one is never removed).
    pub fn create(state: &StateDir, run_id: &str, keep: usize) -> io::Result<LogDir> {
        let logs = state.subdir(LOGS_DIR)?;
        let fd = subdir(logs.as_fd(), run_id)?;
        prune(&state.path.join(LOGS_DIR), &logs, keep, run_id);
        Ok(LogDir { path: state.path.join(LOGS_DIR).join(run_id), fd })
    }

    /// Opens (appends to, creates 0600) log file `name` in the folder,
    /// never through a symlink. Returns the file and its path.
    pub fn open(&self, name: &OsStr) -> io::Result<(File, PathBuf)> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok((File::from(fd), self.path.join(name)))
    }
}

/// Whether `name` is a run id as runner makes them
/// (`20261127T081500.123456Z-` and 16 hex digits).
pub fn is_run_id(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 40
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'.'
        && b[16..22].iter().all(u8::is_ascii_digit)
        && b[22] == b'Z'
        && b[23] == b'-'
        && b[24..].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// Removes all but the newest `keep` run folders (run ids sort by start
/// time); only real directories named as run ids, never `current`.
fn prune(logs_path: &std::path::Path, logs: &OwnedFd, keep: usize, current: &str) {
    let Ok(entries) = std::fs::read_dir(logs_path) else { return };
    let mut runs: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| is_run_id(n))
        .filter(|n| {
            rustix::fs::statat(logs, n.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory)
        })
        .collect();
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    for old in runs.into_iter().take(excess) {
        if old != current {
            // std's remove_dir_all does not follow symlinks inside.
            let _ = std::fs::remove_dir_all(logs_path.join(old));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn run_ids() {
        assert!(is_run_id("20261127T081500.123456Z-0123456789abcdef"));
        assert!(!is_run_id("20261127T081500.123456Z-0123456789abcdeg"));
        assert!(!is_run_id("etc"));
        assert!(!is_run_id("../20261127T081500.123456Z-0123456789abcd"));
    }

    #[test]
    fn prune_keeps_newest_and_never_touches_other_names() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let state = StateDir::open(tmp.path())?;
        let logs = tmp.path().join(LOGS_DIR);
        let ids = ["20260101T000000.000000Z-000000000000000a", "20260102T000000.000000Z-000000000000000b"];
        for r in ids {
            std::fs::create_dir_all(logs.join(r))?;
        }
        std::fs::create_dir_all(logs.join("keep-me"))?;
        let current = "20260103T000000.000000Z-000000000000000c";
        LogDir::create(&state, current, 2)?;
        let mut left: Vec<String> =
            std::fs::read_dir(&logs)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [ids[1], current, "keep-me"]);
        Ok(())
    }
}
