//! The state directory: where it is, the chain lock, the journal
//! (`state.json`), run-once markers and per-run log folders.
//!
//! The journal is replaced atomically (temp file + rename) at every task
//! start and end. Durable commits (fsync of the file, rename, fsync of the
//! directory) happen only at a run's start, at each task's end and at the
//! run's end; nothing else is fsynced. A kill at any instant leaves either
//! the old or the new file, both of which load.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const LOCK_FILE: &str = "lock";
pub const LOGS_DIR: &str = "logs";

/// Where the state of the chain in `task_dir` lives: `--state-dir`, else
/// `[runner] state_dir`, else `/var/lib/runner/<chain>` for root and
/// `$XDG_STATE_HOME/runner/<chain>` (`~/.local/state/runner/<chain>`)
/// otherwise. `<chain>` is the task directory's name and a short hash of
/// its absolute path.
pub fn resolve_dir(flag: Option<&Path>, configured: Option<&Path>, task_dir: &Path) -> PathBuf {
    if let Some(p) = flag.or(configured) {
        return p.to_path_buf();
    }
    let chain = chain_name(task_dir);
    if rustix::process::geteuid().is_root() {
        return Path::new("/var/lib/runner").join(chain);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("runner").join(chain)
}

/// `<dir name>-<8 hex of sha256(absolute path)>`.
pub fn chain_name(task_dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let name = task_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
    let hash = Sha256::digest(task_dir.as_os_str().as_bytes());
    format!("{name}-{}", hex(&hash[..4]))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let perms = fs::metadata(dir)?.permissions();
    if perms.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The chain lock: an OS lock (flock) on `state_dir/lock`, released by the
/// kernel when runner dies, never inherited by tasks (close-on-exec).
pub struct Lock {
    _file: File,
}

/// Takes the chain lock. Without `wait`, a held lock is exit 75 naming the
/// holder's pid and start time.
pub fn lock(dir: &Path, wait: bool) -> Result<Lock> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::Other(anyhow::anyhow!("{}: cannot open lock: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) if wait => {
            crate::logging::info(&format!("waiting for the chain lock ({})", holder(&path)));
            // Poll the lock so that a signal to runner still ends the wait.
            loop {
                if let Some(sig) = crate::signals::sleep(std::time::Duration::from_millis(100)) {
                    return Err(Error::Cancelled(sig));
                }
                match file.try_lock() {
                    Ok(()) => break,
                    Err(fs::TryLockError::WouldBlock) => {}
                    Err(fs::TryLockError::Error(e)) => {
                        return Err(Error::Other(anyhow::anyhow!("{}: cannot lock: {e}", path.display())));
                    }
                }
            }
        }
        Err(fs::TryLockError::WouldBlock) => {
            return Err(Error::Locked(format!(
                "another runner holds this chain's lock ({}); use --wait to wait for it",
                holder(&path)
            )));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(Error::Other(anyhow::anyhow!("{}: cannot lock: {e}", path.display())));
        }
    }
    let who = format!("pid {} since {}\n", std::process::id(), crate::hooks::timestamp(std::time::SystemTime::now()));
    let _ = file.set_len(0).and_then(|_| file.write_all(who.as_bytes()));
    Ok(Lock { _file: file })
}

/// "pid N since T", as the holder wrote it into the lock file.
pub fn holder(lock_path: &Path) -> String {
    let mut s = String::new();
    let _ = File::open(lock_path).and_then(|mut f| f.read_to_string(&mut s));
    match s.trim() {
        "" => format!("{}", lock_path.display()),
        who => format!("held by {who}"),
    }
}

/// The journal: the last run of this chain, and the run-once markers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub task_dir: String,
    /// Written by [`State::to_json`].
    #[serde(skip_serializing, default)]
    pub run: Option<Run>,
    /// `run = once` tasks that succeeded, with when.
    #[serde(default)]
    pub once: BTreeMap<String, String>,
    /// `run = once-per-boot` tasks that succeeded, with the boot id.
    #[serde(default)]
    pub once_per_boot: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Cancelled,
    Finished,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub run_id: String,
    pub status: Status,
    pub pid: u32,
    pub started_at: String,
    pub updated_at: String,
    pub iteration: u64,
    pub try_num: u32,
    /// The task running now, if any.
    pub current: Option<Current>,
    pub next_retry_at: Option<String>,
    pub last_failure: Option<Failure>,
    pub exit_code: Option<i32>,
    /// Each task's last result in this run, whether it is done in this
    /// iteration and how often it succeeded in it (for attempt keys).
    /// Written by [`State::save`] from its cached JSON.
    #[serde(skip_serializing, default)]
    pub tasks: TaskTable,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Current {
    pub task: String,
    pub try_num: u32,
    pub attempt_key: String,
    pub started_at: String,
}

/// A task's last result in this run, stored compactly as
/// `[result, duration in ms, try, successes in this iteration, done in
/// this iteration (0/1)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "(String, u64, u32, u64, u8)", into = "(String, u64, u32, u64, u8)")]
pub struct TaskRecord {
    pub result: String,
    pub duration_ms: u64,
    pub try_num: u32,
    pub successes: u64,
    pub done: bool,
}

impl From<(String, u64, u32, u64, u8)> for TaskRecord {
    fn from((result, duration_ms, try_num, successes, done): (String, u64, u32, u64, u8)) -> TaskRecord {
        TaskRecord { result, duration_ms, try_num, successes, done: done != 0 }
    }
}

impl From<TaskRecord> for (String, u64, u32, u64, u8) {
    fn from(r: TaskRecord) -> (String, u64, u32, u64, u8) {
        (r.result, r.duration_ms, r.try_num, r.successes, u8::from(r.done))
    }
}

/// The per-task records of a run, in the order tasks first finished, with
/// their JSON object kept ready. The journal is rewritten at every task
/// start and end; re-serializing every record each time made a chain of n
/// tasks cost O(n²). Appending a task's record now appends its fragment;
/// only changing an earlier one (a retry, a new iteration) rebuilds it.
#[derive(Clone, Debug, Default)]
pub struct TaskTable {
    rows: Vec<(String, TaskRecord)>,
    index: std::collections::HashMap<String, usize>,
    /// `{"task":[...],...}`
    json: String,
}

impl TaskTable {
    pub fn get(&self, task: &str) -> Option<&TaskRecord> {
        self.index.get(task).map(|&i| &self.rows[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &TaskRecord)> {
        self.rows.iter().map(|(k, v)| (k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Sets a task's record: an append when it is new, a rebuild otherwise.
    pub fn set(&mut self, task: &str, rec: TaskRecord) {
        match self.index.get(task) {
            Some(&i) => {
                self.rows[i].1 = rec;
                self.rebuild();
            }
            None => {
                self.index.insert(task.to_string(), self.rows.len());
                if self.json.len() > 2 {
                    self.json.pop();
                    self.json.push(',');
                } else {
                    self.json.clear();
                    self.json.push('{');
                }
                push_fragment(&mut self.json, task, &rec);
                self.json.push('}');
                self.rows.push((task.to_string(), rec));
            }
        }
    }

    /// Changes every record (a new iteration, a restart), then rebuilds.
    pub fn update_all(&mut self, mut f: impl FnMut(&mut TaskRecord)) {
        self.rows.iter_mut().for_each(|(_, r)| f(r));
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.json.clear();
        self.json.push('{');
        for (i, (task, rec)) in self.rows.iter().enumerate() {
            if i > 0 {
                self.json.push(',');
            }
            push_fragment(&mut self.json, task, rec);
        }
        self.json.push('}');
    }

    /// The JSON object of all records.
    pub fn json(&self) -> &str {
        if self.json.is_empty() { "{}" } else { &self.json }
    }
}

fn push_fragment(out: &mut String, task: &str, rec: &TaskRecord) {
    out.push_str(&serde_json::to_string(task).unwrap_or_else(|_| "\"\"".into()));
    out.push(':');
    let tuple: (String, u64, u32, u64, u8) = rec.clone().into();
    out.push_str(&serde_json::to_string(&tuple).unwrap_or_else(|_| "null".into()));
}

impl<'de> Deserialize<'de> for TaskTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<TaskTable, D::Error> {
        // serde_json's Map keeps file order (preserve_order).
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut table = TaskTable::default();
        for (task, v) in map {
            let rec: TaskRecord = serde_json::from_value(v).map_err(serde::de::Error::custom)?;
            table.index.insert(task.clone(), table.rows.len());
            table.rows.push((task, rec));
        }
        table.rebuild();
        Ok(table)
    }
}

/// The last task that did not end OK, with where to look.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Failure {
    pub task: String,
    pub result: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub try_num: u32,
    pub at: String,
    pub log_file: Option<String>,
}

impl State {
    /// Reads `state.json`; no file is an empty state. A file that does not
    /// parse (written by something else) is moved aside, never deleted.
    pub fn load(dir: &Path) -> Result<State> {
        let path = dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(Error::Other(anyhow::anyhow!("{}: cannot read state: {e}", path.display()))),
        };
        match serde_json::from_slice(&bytes) {
            Ok(s) => Ok(s),
            Err(e) => {
                let aside = dir.join(format!("{STATE_FILE}.unreadable-{}", std::process::id()));
                crate::logging::warn(&format!(
                    "{}: cannot load state ({e}); moved to {} and starting fresh",
                    path.display(),
                    aside.display()
                ));
                let _ = fs::rename(&path, &aside);
                Ok(State::default())
            }
        }
    }

    /// Reads `state.json` for `--status`: never moves or writes anything.
    pub fn load_readonly(dir: &Path) -> Result<State> {
        let path = dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Other(anyhow::anyhow!("{}: cannot load state: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::Other(anyhow::anyhow!("{}: cannot read state: {e}", path.display()))),
        }
    }

    /// The journal as JSON. `run` and its `tasks` are spliced in by hand so
    /// that the task table's cached JSON is copied, not re-serialized.
    pub fn to_json(&self) -> io::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        if let Some(run) = &self.run {
            bytes.pop();
            bytes.extend_from_slice(b",\"run\":");
            let run_bytes = serde_json::to_vec(run).map_err(io::Error::other)?;
            bytes.extend_from_slice(&run_bytes[..run_bytes.len() - 1]);
            bytes.extend_from_slice(b",\"tasks\":");
            bytes.extend_from_slice(run.tasks.json().as_bytes());
            bytes.extend_from_slice(b"}}");
        }
        Ok(bytes)
    }

    /// Replaces `state.json` atomically. With `sync_dir` (the state
    /// directory, opened once by the journal) the write is durable: the file
    /// and the directory are fsynced.
    pub fn save(&self, dir: &Path, sync_dir: Option<&File>) -> io::Result<()> {
        let durable = sync_dir.is_some();
        let mut bytes = self.to_json()?;
        bytes.push(b'\n');
        let mut tmp = tempfile::Builder::new().prefix(".state.").tempfile_in(dir)?;
        tmp.write_all(&bytes)?;
        if durable {
            tmp.as_file().sync_data()?;
        }
        tmp.persist(dir.join(STATE_FILE)).map_err(|e| e.error)?;
        if let Some(d) = sync_dir {
            d.sync_all()?;
        }
        Ok(())
    }
}

/// Removes journal temp files that a runner killed mid-write left behind
/// (only the lock holder writes them, so with the lock held they are stale).
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().as_encoded_bytes().starts_with(b".state.") {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Removes all but the newest `keep` run folders under `logs/` (run ids
/// sort by start time). `current` is never removed.
pub fn prune_logs(logs: &Path, keep: usize, current: &str) {
    let Ok(entries) = fs::read_dir(logs) else { return };
    let mut runs: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    for old in runs.into_iter().take(excess) {
        if old != current {
            let _ = fs::remove_dir_all(logs.join(old));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn chain_names_differ_by_path() {
        let a = chain_name(Path::new("/etc/runner.d"));
        let b = chain_name(Path::new("/srv/runner.d"));
        assert!(a.starts_with("runner.d-") && a.len() == "runner.d-".len() + 8);
        assert_ne!(a, b);
    }

    #[test]
    fn save_and_load_round_trip() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut s = State { version: 1, ..State::default() };
        s.once.insert("a".into(), "t".into());
        s.save(dir.path(), Some(&File::open(dir.path())?))?;
        let back = State::load(dir.path()).map_err(|e| e.to_string())?;
        assert_eq!(back.once.get("a").map(String::as_str), Some("t"));
        Ok(())
    }

    #[test]
    fn unreadable_state_is_moved_aside() -> TestResult {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join(STATE_FILE), b"{garbage")?;
        let s = State::load(dir.path()).map_err(|e| e.to_string())?;
        assert!(s.run.is_none());
        assert!(!dir.path().join(STATE_FILE).exists());
        assert_eq!(fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn prune_keeps_newest() -> TestResult {
        let dir = tempfile::tempdir()?;
        for r in ["20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c"] {
            fs::create_dir(dir.path().join(r))?;
        }
        prune_logs(dir.path(), 2, "20260103T000000Z-c");
        let mut left: Vec<String> =
            fs::read_dir(dir.path())?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["20260102T000000Z-b", "20260103T000000Z-c"]);
        Ok(())
    }
}

/// Where the run the journal records starts from.
#[derive(Clone, Debug)]
pub struct Resumed {
    pub run_id: String,
    pub iteration: u64,
    pub try_num: u32,
    pub done: Vec<String>,
    pub successes: BTreeMap<String, u64>,
}

/// The state directory of a locked chain and its journal.
pub struct Journal {
    pub dir: PathBuf,
    /// The state directory, kept open for the fsync of each durable commit.
    dir_file: File,
    pub state: State,
    boot_id: String,
    _lock: Lock,
}

fn now() -> String {
    crate::hooks::timestamp(std::time::SystemTime::now())
}

impl Journal {
    /// Creates the state directory (0700), takes the lock and loads the
    /// journal.
    pub fn open(dir: &Path, task_dir: &Path, wait: bool) -> Result<Journal> {
        create_private_dir(dir)
            .map_err(|e| Error::Other(anyhow::anyhow!("{}: cannot create state directory: {e}", dir.display())))?;
        let lock = lock(dir, wait)?;
        remove_stale_temp_files(dir);
        let mut state = State::load(dir)?;
        state.version = 1;
        state.task_dir = task_dir.to_string_lossy().into_owned();
        let dir_file = File::open(dir)
            .map_err(|e| Error::Other(anyhow::anyhow!("{}: cannot open state directory: {e}", dir.display())))?;
        Ok(Journal { dir: dir.to_path_buf(), dir_file, state, boot_id: boot_id(), _lock: lock })
    }

    /// Writes the journal; `durable` makes it a durable commit.
    fn commit(&self, durable: bool) -> io::Result<()> {
        self.state.save(&self.dir, durable.then_some(&self.dir_file))
    }

    /// The unfinished run that `--resume` would continue, if any.
    pub fn resumable(&self) -> Option<Resumed> {
        let run = self.state.run.as_ref().filter(|r| r.status != Status::Finished)?;
        Some(Resumed {
            run_id: run.run_id.clone(),
            iteration: run.iteration,
            try_num: run.try_num,
            done: run.tasks.iter().filter(|(_, r)| r.done).map(|(t, _)| t.clone()).collect(),
            successes: run.tasks.iter().map(|(t, r)| (t.clone(), r.successes)).collect(),
        })
    }

    /// Records the start of a run (durable).
    pub fn begin(&mut self, r: &Resumed) -> io::Result<()> {
        let started_at = match &self.state.run {
            Some(old) if old.run_id == r.run_id => old.started_at.clone(),
            _ => now(),
        };
        let (tasks, last_failure) = match &self.state.run {
            Some(old) if old.run_id == r.run_id => (old.tasks.clone(), old.last_failure.clone()),
            _ => (TaskTable::default(), None),
        };
        self.state.run = Some(Run {
            run_id: r.run_id.clone(),
            status: Status::Running,
            pid: std::process::id(),
            started_at,
            updated_at: now(),
            iteration: r.iteration,
            try_num: r.try_num,
            current: None,
            next_retry_at: None,
            last_failure,
            exit_code: None,
            tasks,
        });
        self.commit(true)
    }

    fn run_mut(&mut self) -> Option<&mut Run> {
        let run = self.state.run.as_mut()?;
        run.updated_at = now();
        Some(run)
    }

    /// A new iteration begins: nothing done yet, try 1 (not durable: the
    /// journal of a finished iteration already says every task is done).
    pub fn iteration(&mut self, iteration: u64) -> io::Result<()> {
        if let Some(run) = self.run_mut() {
            run.iteration = iteration;
            run.try_num = 1;
            run.tasks.update_all(|r| {
                r.done = false;
                r.successes = 0;
            });
            run.next_retry_at = None;
        }
        self.commit(false)
    }

    /// A task starts (not durable).
    pub fn task_start(&mut self, task: &str, try_num: u32, attempt_key: &str) -> io::Result<()> {
        if let Some(run) = self.run_mut() {
            run.try_num = try_num;
            run.next_retry_at = None;
            run.current =
                Some(Current { task: task.into(), try_num, attempt_key: attempt_key.into(), started_at: now() });
        }
        self.commit(false)
    }

    /// A task ended (durable). An OK adds it to the done list; otherwise
    /// `failure` becomes the last failure. `next` records a coming retry, a
    /// run-once marker, or that the run ends (halt, give up, stop) — before
    /// the halt task runs, so a machine that halts is never resumed into the
    /// same halt.
    pub fn task_end(&mut self, task: &str, rec: TaskRecord, failure: Option<Failure>, next: TaskEnd) -> io::Result<()> {
        let boot = self.boot_id.clone();
        let ok = rec.result == "OK";
        if let Some(run) = self.run_mut() {
            run.current = None;
            let mut rec = rec;
            let old = run.tasks.get(task);
            rec.successes = old.map_or(0, |o| o.successes) + u64::from(ok);
            rec.done = ok;
            if failure.is_some() {
                run.last_failure = failure;
            }
            if let TaskEnd::Retry { next_try, at, restart } = &next {
                run.try_num = *next_try;
                run.next_retry_at = Some(at.clone());
                if *restart {
                    run.tasks.update_all(|r| r.done = false);
                }
            }
            if let TaskEnd::Final(code) = next {
                run.status = Status::Finished;
                run.exit_code = Some(code);
            }
            run.tasks.set(task, rec);
        }
        match next {
            TaskEnd::Once if ok => {
                self.state.once.insert(task.into(), now());
            }
            TaskEnd::OncePerBoot if ok => {
                self.state.once_per_boot.insert(task.into(), boot);
            }
            _ => {}
        }
        self.commit(true)
    }

    /// The run ended (durable).
    pub fn finish(&mut self, status: Status, code: i32) -> io::Result<()> {
        if let Some(run) = self.run_mut() {
            run.status = status;
            run.exit_code = Some(code);
            run.current = None;
            run.next_retry_at = None;
        }
        self.commit(true)
    }

    /// Whether a run-once task already succeeded (on this machine, or in
    /// this boot).
    pub fn already_ran(&self, task: &str, mode: crate::config::RunMode) -> bool {
        use crate::config::RunMode;
        match mode {
            RunMode::Always => false,
            RunMode::Once => self.state.once.contains_key(task),
            RunMode::OncePerBoot => self.state.once_per_boot.get(task).is_some_and(|b| *b == self.boot_id),
        }
    }

    /// Forgets the run-once markers of `task`; whether there were any.
    pub fn forget(&mut self, task: &str) -> io::Result<bool> {
        let had = self.state.once.remove(task).is_some() | self.state.once_per_boot.remove(task).is_some();
        if had {
            self.commit(true)?;
        }
        Ok(had)
    }

    /// The log folder of a run, created 0700; older folders beyond `keep`
    /// are pruned.
    pub fn log_dir(&self, run_id: &str, keep: u32) -> Option<PathBuf> {
        if keep == 0 {
            return None;
        }
        let logs = self.dir.join(LOGS_DIR);
        let dir = logs.join(run_id);
        if let Err(e) = create_private_dir(&dir) {
            crate::logging::warn(&format!("{}: cannot create log folder: {e}; task logs are off", dir.display()));
            return None;
        }
        prune_logs(&logs, keep as usize, run_id);
        Some(dir)
    }
}

/// What a task's end means for the journal.
pub enum TaskEnd {
    Continue,
    /// OK of a `run = once` task.
    Once,
    /// OK of a `run = once-per-boot` task.
    OncePerBoot,
    Retry {
        next_try: u32,
        at: String,
        restart: bool,
    },
    /// The run ends with this code.
    Final(i32),
}
