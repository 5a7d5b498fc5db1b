//! Log folders, one per iteration of a run: `state_dir/logs/<run id>/` for
//! the first iteration, `logs/<run id>.<N>/` for iteration N, each holding
//! `<task file>.log`; created 0700 (files 0600) without following symlinks.
//! Each folder is a unit of retention: the newest `keep_logs` are kept, so
//! a chain looping forever keeps bounded log space. Pruning removes only
//! folders whose names are units runner made; anything else in `logs/` is
//! left alone.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags};

use super::dir::{StateDir, subdir};

pub const LOGS_DIR: &str = "logs";

/// The log folder of one iteration of a run.
pub struct LogDir {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl LogDir {
    /// Creates the folder of `iteration` of `run_id` under `logs/` and
    /// prunes older ones beyond `keep` (the current one is never removed).
    pub fn create(state: &StateDir, run_id: &str, iteration: u64, keep: usize) -> io::Result<LogDir> {
        let name = unit_name(run_id, iteration);
        let logs = state.subdir(LOGS_DIR)?;
        let fd = subdir(logs.as_fd(), &name)?;
        prune(&state.path.join(LOGS_DIR), &logs, keep, &name);
        Ok(LogDir { path: state.path.join(LOGS_DIR).join(name), fd })
    }

    /// Opens (creates 0600) log file `name` in the folder, never through a
    /// symlink; writers go on at its end. Returns the file and its path.
    pub fn open(&self, name: &OsStr) -> io::Result<(File, PathBuf)> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
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

/// The folder name of an iteration: the run id, plus `.N` after the first.
pub fn unit_name(run_id: &str, iteration: u64) -> String {
    if iteration <= 1 { run_id.to_string() } else { format!("{run_id}.{iteration}") }
}

/// A folder name as a unit runner made: (run id, iteration).
fn parse_unit(name: &str) -> Option<(&str, u64)> {
    let run_id = name.get(..40).filter(|id| is_run_id(id))?;
    match name.get(40..)? {
        "" => Some((run_id, 1)),
        rest => {
            let n: u64 = rest.strip_prefix('.')?.parse().ok()?;
            (n >= 2 && !rest.starts_with(".0")).then_some((run_id, n))
        }
    }
}

/// Removes all but the newest `keep` iteration folders (run ids sort by
/// start time, then iterations by number); only real directories named as
/// runner names them, never `current`.
fn prune(logs_path: &std::path::Path, logs: &OwnedFd, keep: usize, current: &str) {
    let Ok(entries) = std::fs::read_dir(logs_path) else { return };
    let names: Vec<String> =
        entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().map(String::from)).collect();
    let mut units: Vec<((String, u64), &String)> = names
        .iter()
        .filter_map(|n| parse_unit(n).map(|(id, it)| ((id.to_string(), it), n)))
        .filter(|(_, n)| {
            rustix::fs::statat(logs, n.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory)
        })
        .collect();
    units.sort();
    let excess = units.len().saturating_sub(keep);
    for (_, old) in units.into_iter().take(excess) {
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
    fn units() {
        let id = "20261127T081500.123456Z-0123456789abcdef";
        assert_eq!(parse_unit(id), Some((id, 1)));
        assert_eq!(parse_unit(&unit_name(id, 12)), Some((id, 12)));
        assert_eq!(parse_unit(&format!("{id}.1")), None);
        assert_eq!(parse_unit(&format!("{id}.x")), None);
        assert_eq!(parse_unit("keep-me"), None);
    }

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
        LogDir::create(&state, current, 1, 2)?;
        let mut left: Vec<String> =
            std::fs::read_dir(&logs)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [ids[1], current, "keep-me"]);
        Ok(())
    }
}
