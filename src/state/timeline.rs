//! The timeline of a run, for `--plot`: one JSON line per try, backoff
//! sleep, halt or reboot task and reboot wait, in
//! `state_dir/timelines/<run id>.jsonl`, created 0600 (the folder 0700)
//! without following symlinks and appended to as the run goes (not
//! synced: the journal is the durable state; this is a record).
//!
//! Bounded: the timelines of the newest `keep` runs are kept (pruned when a
//! run starts; only files named as runner names them), and one file stops
//! growing at [`MAX_BYTES`] with a last `truncated` line. Writing must never
//! fail the chain: an error turns the timeline off for the run.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::SystemTime;

use rustix::fs::{AtFlags, Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::dir::StateDir;
use super::logs::is_run_id;

pub const TIMELINES_DIR: &str = "timelines";
/// One run's timeline stops growing here (about 40,000 tries).
pub const MAX_BYTES: u64 = 8 << 20;

/// One thing that took time in a run. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Entry {
    /// The run started (or was resumed) at `at`.
    Run { run_id: String, task_dir: String, at: f64, resumed: bool },
    /// One try of a task.
    Try { task: String, iteration: u64, try_num: u32, start: f64, end: f64, result: String, timed_out: bool },
    /// The backoff before `task`'s next try.
    Sleep { task: String, start: f64, end: f64 },
    /// The halt or reboot task (`kind`).
    Special { kind: String, task: String, start: f64, end: f64, exit_code: Option<i32> },
    /// From the reboot `task` asked for until the run went on after it.
    RebootWait { task: String, start: f64, end: f64 },
    /// The run ended (or waits for a reboot) with `code`.
    End { code: i32, at: f64 },
    /// The file reached [`MAX_BYTES`]; what followed is not recorded.
    Truncated { at: f64 },
}

/// The timeline being written.
#[derive(Default)]
pub struct Timeline {
    file: Option<File>,
    written: u64,
}

impl Timeline {
    /// Opens (appends to) the timeline of `run_id` and prunes all but the
    /// newest `keep` others. Off when it cannot be opened.
    pub fn open(state: &StateDir, run_id: &str, keep: usize) -> Timeline {
        let opened = (|| -> io::Result<(OwnedFd, File)> {
            let dir = state.subdir(TIMELINES_DIR)?;
            let fd = rustix::fs::openat(
                &dir,
                format!("{run_id}.jsonl").as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            Ok((dir, File::from(fd)))
        })();
        match opened {
            Ok((dir, file)) => {
                prune(&state.path.join(TIMELINES_DIR), &dir, keep.max(1), run_id);
                let written = file.metadata().map_or(0, |m| m.len());
                Timeline { file: Some(file), written }
            }
            Err(e) => {
                crate::logging::debug(&format!("{}: no timeline: {e}", state.path.join(TIMELINES_DIR).display()));
                Timeline::default()
            }
        }
    }

    /// Appends one entry (nothing past [`MAX_BYTES`]).
    pub fn add(&mut self, e: &Entry) {
        let Some(file) = self.file.as_mut() else { return };
        let Ok(mut line) = serde_json::to_vec(e) else { return };
        line.push(b'\n');
        let full = self.written + line.len() as u64 > MAX_BYTES;
        if full {
            line = serde_json::to_vec(&Entry::Truncated { at: crate::util::unix_secs(SystemTime::now()) })
                .unwrap_or_default();
            line.push(b'\n');
        }
        if file.write_all(&line).is_err() || full {
            self.file = None;
        }
        self.written += line.len() as u64;
    }
}

/// The run ids that have a timeline, oldest first.
pub fn runs(state_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join(TIMELINES_DIR)) else { return Vec::new() };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".jsonl")).map(String::from))
        .filter(|id| is_run_id(id))
        .collect();
    ids.sort();
    ids
}

/// The entries of run `run_id`'s timeline (lines that do not parse, such
/// as a torn last one, are skipped).
pub fn load(state_dir: &Path, run_id: &str) -> io::Result<Vec<Entry>> {
    let state = StateDir::open(&state_dir.join(TIMELINES_DIR))?;
    let bytes = state
        .read(&format!("{run_id}.jsonl"))?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no timeline recorded for this run"))?;
    Ok(bytes.split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice(l).ok()).collect())
}

/// Removes all but the newest `keep` timelines; never `current`'s, never a
/// file not named as runner names them.
fn prune(path: &Path, dir: &OwnedFd, keep: usize, current: &str) {
    let Ok(entries) = std::fs::read_dir(path) else { return };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".jsonl")).map(String::from))
        .filter(|id| is_run_id(id) && id != current)
        .collect();
    ids.sort();
    let excess = (ids.len() + 1).saturating_sub(keep);
    for id in ids.into_iter().take(excess) {
        let _ = rustix::fs::unlinkat(dir.as_fd(), format!("{id}.jsonl").as_str(), AtFlags::empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_the_file_is_bounded() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let state = StateDir::create(tmp.path()).map_err(|e| e.to_string())?;
        let ids: Vec<String> = (0..4).map(|i| format!("20261127T08150{i}.123456Z-0123456789abcdef")).collect();
        for id in &ids {
            let mut t = Timeline::open(&state, id, 2);
            t.add(&Entry::Run { run_id: id.clone(), task_dir: "/t".into(), at: 1.0, resumed: false });
        }
        // The newest two are kept.
        assert_eq!(runs(tmp.path()), ids[2..].to_vec());
        let mut t = Timeline::open(&state, &ids[3], 2);
        let e = Entry::Try {
            task: "a".into(),
            iteration: 1,
            try_num: 1,
            start: 1.0,
            end: 2.5,
            result: "OK".into(),
            timed_out: false,
        };
        t.add(&e);
        let loaded = load(tmp.path(), &ids[3])?;
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[1], e);
        t.written = MAX_BYTES - 10;
        t.add(&e);
        t.add(&e);
        let loaded = load(tmp.path(), &ids[3])?;
        assert!(matches!(loaded.last(), Some(Entry::Truncated { .. })), "{loaded:?}");
        assert_eq!(loaded.len(), 3);
        Ok(())
    }
}
