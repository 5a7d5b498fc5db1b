//! The journal (`state.json`): the last run of this chain — run id,
//! iteration, try, which tasks finished and how, the attempt-key counters —
//! and the run-once markers of every task directory that used this state
//! directory.
//!
//! It is replaced atomically at every task start and end. Durable commits
//! (data sync, rename, directory sync) happen only at a run's start, at
//! each task's end and at the run's end; nothing else is synced. A kill at
//! any instant leaves either the old or the new file, both of which load.
//!
//! The run-once markers have a second durable copy, `markers.json`,
//! written whenever they change; a journal that does not load is recovered
//! from it with a warning, and when neither loads runner refuses to run
//! (exit 74) rather than run a once-task a second time.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dir::StateDir;
use super::logs::LogDir;
use crate::error::{Error, Result};
use crate::settings::config::RunMode;

pub const STATE_FILE: &str = "state.json";
pub const MARKERS_FILE: &str = "markers.json";

/// The journal: the last run of this chain, and the run-once markers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The (canonical) task directory whose run `run` is.
    pub task_dir: String,
    /// Written by [`State::to_json`].
    #[serde(skip_serializing, default)]
    pub run: Option<Run>,
    /// Run-once markers per task directory.
    #[serde(default)]
    pub markers: BTreeMap<String, Markers>,
    /// Version 1 kept the markers of `task_dir` here; moved into
    /// `markers` on load.
    #[serde(default, skip_serializing)]
    once: BTreeMap<String, String>,
    #[serde(default, skip_serializing)]
    once_per_boot: BTreeMap<String, String>,
}

/// The run-once markers of one task directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Markers {
    /// `run = once` tasks that succeeded, with when.
    #[serde(default)]
    pub once: BTreeMap<String, String>,
    /// `run = once-per-boot` tasks that succeeded, with the boot id.
    #[serde(default)]
    pub once_per_boot: BTreeMap<String, String>,
}

impl Markers {
    /// Whether a task with this run mode already succeeded (on this
    /// machine, or in the boot `boot_id`).
    pub fn already_ran(&self, task: &str, mode: RunMode, boot_id: &str) -> bool {
        match mode {
            RunMode::Always => false,
            RunMode::Once => self.once.contains_key(task),
            RunMode::OncePerBoot => self.once_per_boot.get(task).is_some_and(|b| b == boot_id),
        }
    }

    fn is_empty(&self) -> bool {
        self.once.is_empty() && self.once_per_boot.is_empty()
    }

    /// Adds every marker of `other` that `self` lacks.
    fn absorb(&mut self, other: &Markers) {
        for (k, v) in &other.once {
            self.once.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.once_per_boot {
            self.once_per_boot.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// `markers.json`: the second copy of every task directory's markers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct MarkersFile {
    version: u32,
    markers: BTreeMap<String, Markers>,
}

/// Merges one map of per-directory markers into another.
fn absorb_all(into: &mut BTreeMap<String, Markers>, from: &BTreeMap<String, Markers>) {
    for (dir, m) in from {
        into.entry(dir.clone()).or_default().absorb(m);
    }
    into.retain(|_, m| !m.is_empty());
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
    /// The run decided to halt (a task exited 2, one gave up, or `-H`
    /// after the last iteration): recorded durably before the halt task
    /// starts, so that `--resume` never repeats a halt that rebooted the
    /// machine, even when the halt task was cut short by a signal.
    #[serde(default)]
    pub halting: bool,
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
    pub fn update_all(&mut self, mut f: impl FnMut(&str, &mut TaskRecord)) {
        self.rows.iter_mut().for_each(|(name, r)| f(name, r));
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
    /// How it ended, in words (`exit 1 after 0.004 s`, `cannot start …`).
    #[serde(default)]
    pub how: Option<String>,
}

impl State {
    fn parse(bytes: &[u8]) -> serde_json::Result<State> {
        let mut s: State = serde_json::from_slice(bytes)?;
        if !s.once.is_empty() || !s.once_per_boot.is_empty() {
            let legacy =
                Markers { once: std::mem::take(&mut s.once), once_per_boot: std::mem::take(&mut s.once_per_boot) };
            s.markers.entry(s.task_dir.clone()).or_default().absorb(&legacy);
        }
        Ok(s)
    }

    /// Reads the journal for `--status` and `--dry-run`: never writes, never
    /// fails. A journal that is missing or does not load reads as empty.
    pub fn load_readonly(dir: &Path) -> State {
        let Ok(d) = StateDir::open(dir) else { return State::default() };
        let mut state = d.read(STATE_FILE).ok().flatten().and_then(|b| State::parse(&b).ok()).unwrap_or_default();
        if let Some(file) =
            d.read(MARKERS_FILE).ok().flatten().and_then(|b| serde_json::from_slice::<MarkersFile>(&b).ok())
        {
            absorb_all(&mut state.markers, &file.markers);
        }
        state
    }

    /// The markers of one task directory.
    pub fn markers_of(&self, task_dir: &str) -> Markers {
        self.markers.get(task_dir).cloned().unwrap_or_default()
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
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// How one of the two files read at open.
enum Loaded<T> {
    Missing,
    Good(T),
    /// It exists but does not parse: the parse error.
    Broken(String),
}

impl<T> Loaded<T> {
    fn describe(&self, path: &str) -> String {
        match self {
            Loaded::Broken(e) => format!("{path} does not load ({e})"),
            Loaded::Missing => format!("{path} is missing"),
            Loaded::Good(_) => format!("{path} loads"),
        }
    }
}

fn load<T>(dir: &StateDir, name: &str, parse: impl Fn(&[u8]) -> serde_json::Result<T>) -> Result<Loaded<T>> {
    match dir.read(name) {
        Ok(None) => Ok(Loaded::Missing),
        Ok(Some(bytes)) => Ok(match parse(&bytes) {
            Ok(v) => Loaded::Good(v),
            Err(e) => Loaded::Broken(e.to_string()),
        }),
        Err(e) => Err(Error::State(format!("{}: cannot read: {e}", dir.path.join(name).display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn version_1_markers_move_to_their_task_dir() -> TestResult {
        let s = State::parse(br#"{"version":1,"task_dir":"/t","once":{"a":"x"},"once_per_boot":{"b":"boot"}}"#)?;
        let m = s.markers_of("/t");
        assert!(m.already_ran("a", RunMode::Once, ""));
        assert!(m.already_ran("b", RunMode::OncePerBoot, "boot"));
        assert!(!m.already_ran("b", RunMode::OncePerBoot, "other"));
        assert!(s.markers_of("/other").once.is_empty());
        Ok(())
    }

    #[test]
    fn markers_round_trip_and_merge() -> TestResult {
        let mut a = BTreeMap::new();
        a.insert("/t".to_string(), Markers { once: [("x".into(), "1".into())].into(), ..Markers::default() });
        let mut b = BTreeMap::new();
        b.insert("/t".to_string(), Markers { once: [("y".into(), "2".into())].into(), ..Markers::default() });
        absorb_all(&mut a, &b);
        assert_eq!(a["/t"].once.len(), 2);
        let s = State { version: 2, task_dir: "/t".into(), markers: a, ..State::default() };
        let back = State::parse(&s.to_json()?)?;
        assert_eq!(back.markers, s.markers);
        Ok(())
    }
}

/// Where a run is: owned by the chain, saved to the journal and loaded from
/// it as is (attempt keys hash these counters, so they must never drift).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub run_id: String,
    pub iteration: u64,
    /// The try of the chain within this iteration, from 1.
    pub try_num: u32,
    /// Tasks that ended OK in this iteration (since the last restart).
    pub done: BTreeSet<String>,
    /// How often each task ended OK in this iteration.
    pub successes: BTreeMap<String, u64>,
}

impl Cursor {
    /// The start of a new run.
    pub fn start(run_id: String) -> Cursor {
        Cursor { run_id, iteration: 1, try_num: 1, ..Cursor::default() }
    }

    /// The start of the next iteration.
    pub fn next_iteration(&mut self) {
        self.iteration += 1;
        self.try_num = 1;
        self.done.clear();
        self.successes.clear();
    }

    /// How often `task` succeeded in this iteration.
    pub fn successes_of(&self, task: &str) -> u64 {
        self.successes.get(task).copied().unwrap_or(0)
    }
}

/// The state directory of a locked chain and its journal.
pub struct Journal {
    pub dir: StateDir,
    pub state: State,
    /// The canonical task directory of this chain.
    task_dir: String,
    boot_id: String,
    _lock: super::dir::Lock,
}

fn now() -> String {
    crate::util::timestamp(std::time::SystemTime::now())
}

impl Journal {
    /// Creates the state directory (0700; as root, refused with 77 when
    /// another user could steer it), takes the lock and loads the journal
    /// and the markers' copy, recovering one from the other. When neither
    /// loads and `has_run_once` (the chain has run-once tasks whose markers
    /// would be lost), refuses with 74.
    pub fn open(path: &Path, task_dir: &Path, wait: bool, has_run_once: bool) -> Result<Journal> {
        let dir = StateDir::create(path)?;
        let lock = dir.lock(wait)?;
        dir.remove_stale_temp_files();
        let state = load(&dir, STATE_FILE, State::parse)?;
        let copy = load(&dir, MARKERS_FILE, |b| serde_json::from_slice::<MarkersFile>(b))?;
        let base = dir.path.clone();
        let show = |name: &str| base.join(name).display().to_string();
        let (mut state, copy) = match (state, copy) {
            (Loaded::Good(s), Loaded::Good(c)) => (s, Some(c)),
            (Loaded::Good(s), Loaded::Missing) => (s, None),
            (Loaded::Good(s), Loaded::Broken(e)) => {
                let aside = dir.move_aside(MARKERS_FILE, "unreadable").unwrap_or_default();
                crate::logging::warn(&format!(
                    "{}: cannot load ({e}); moved to {aside} and rewritten from {STATE_FILE}",
                    show(MARKERS_FILE)
                ));
                (s, None)
            }
            (Loaded::Missing, Loaded::Good(c)) => (State::default(), Some(c)),
            (Loaded::Broken(e), Loaded::Good(c)) => {
                let aside = dir.move_aside(STATE_FILE, "unreadable").unwrap_or_default();
                crate::logging::warn(&format!(
                    "{}: cannot load ({e}); moved to {aside}; run-once markers recovered from {}; \
                     the last run cannot be resumed",
                    show(STATE_FILE),
                    show(MARKERS_FILE)
                ));
                (State::default(), Some(c))
            }
            (Loaded::Missing, Loaded::Missing) => (State::default(), None),
            (state, copy) => {
                let msg = format!("{}, and {}", state.describe(&show(STATE_FILE)), copy.describe(&show(MARKERS_FILE)));
                if has_run_once {
                    return Err(Error::State(format!(
                        "{msg}: the run-once markers are lost, and run-once tasks would run again; \
                         refusing to run. To accept that, move both aside and run again: \
                         mv {s} {s}.bad; mv {m} {m}.bad",
                        s = show(STATE_FILE),
                        m = show(MARKERS_FILE)
                    )));
                }
                crate::logging::warn(&format!(
                    "{msg}; starting with an empty state (this chain has no run-once tasks)"
                ));
                for name in [STATE_FILE, MARKERS_FILE] {
                    let _ = dir.move_aside(name, "unreadable");
                }
                (State::default(), None)
            }
        };
        let file_markers = copy.map(|c| c.markers).unwrap_or_default();
        absorb_all(&mut state.markers, &file_markers);
        let journal =
            Journal { dir, state, task_dir: task_dir.to_string_lossy().into_owned(), boot_id: boot_id(), _lock: lock };
        // The copy is kept equal to the journal's markers (and exists, so
        // that a lost journal can always be told from one that had none).
        if file_markers != journal.state.markers || !journal.dir.path.join(MARKERS_FILE).exists() {
            journal.save_markers().map_err(|e| Error::State(format!("{}: cannot write: {e}", show(MARKERS_FILE))))?;
        }
        Ok(journal)
    }

    /// Writes `markers.json` (durable).
    fn save_markers(&self) -> io::Result<()> {
        let file = MarkersFile { version: 1, markers: self.state.markers.clone() };
        let mut bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
        bytes.push(b'\n');
        self.dir.replace(MARKERS_FILE, &bytes, true)
    }

    /// Writes the journal; `durable` makes it a durable commit.
    fn commit(&self, durable: bool) -> io::Result<()> {
        self.dir.replace(STATE_FILE, &self.state.to_json()?, durable)
    }

    /// The unfinished run of this chain that `--resume` would continue, if
    /// any. A run recorded for another task directory (two chains sharing a
    /// state directory) is never resumed.
    pub fn resumable(&self) -> Option<Cursor> {
        let run = self.state.run.as_ref().filter(|r| r.status != Status::Finished)?;
        if run.halting {
            crate::logging::info("the last run ended by halting; not resuming it");
            return None;
        }
        if self.state.task_dir != self.task_dir {
            crate::logging::warn(&format!(
                "{}: the unfinished run recorded here is of another task directory ({}); not resuming it",
                self.dir.path.display(),
                self.state.task_dir
            ));
            return None;
        }
        Some(Cursor {
            run_id: run.run_id.clone(),
            iteration: run.iteration,
            try_num: run.try_num,
            done: run.tasks.iter().filter(|(_, r)| r.done).map(|(t, _)| t.clone()).collect(),
            successes: run
                .tasks
                .iter()
                .filter(|(_, r)| r.successes > 0)
                .map(|(t, r)| (t.clone(), r.successes))
                .collect(),
        })
    }

    /// Records the start of a run (durable).
    pub fn begin(&mut self, c: &Cursor) -> io::Result<()> {
        let same = self.state.task_dir == self.task_dir;
        let (started_at, tasks, last_failure) = match &self.state.run {
            Some(old) if same && old.run_id == c.run_id => {
                (old.started_at.clone(), old.tasks.clone(), old.last_failure.clone())
            }
            _ => (now(), TaskTable::default(), None),
        };
        self.state.version = 2;
        self.state.task_dir = self.task_dir.clone();
        self.state.run = Some(Run {
            run_id: c.run_id.clone(),
            status: Status::Running,
            pid: std::process::id(),
            started_at,
            updated_at: now(),
            iteration: c.iteration,
            try_num: c.try_num,
            current: None,
            next_retry_at: None,
            last_failure,
            exit_code: None,
            halting: false,
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
    pub fn iteration(&mut self, c: &Cursor) -> io::Result<()> {
        if let Some(run) = self.run_mut() {
            run.iteration = c.iteration;
            run.try_num = c.try_num;
            run.tasks.update_all(|_, r| {
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

    /// A task ended (durable), with `c` already moved on past it: the task's
    /// record takes its counters from the cursor as they are. `failure`
    /// becomes the last failure. `next` records a coming retry, a run-once
    /// marker, or that the run ends (halt, give up, stop) — before the halt
    /// task runs, so a machine that halts is never resumed into the same
    /// halt.
    pub fn task_end(
        &mut self,
        c: &Cursor,
        task: &str,
        rec: TaskRecord,
        failure: Option<Failure>,
        next: TaskEnd,
    ) -> io::Result<()> {
        let boot = self.boot_id.clone();
        let ok = rec.result == "OK";
        if let Some(run) = self.run_mut() {
            run.current = None;
            run.try_num = c.try_num;
            let mut rec = rec;
            rec.successes = c.successes_of(task);
            rec.done = c.done.contains(task);
            if failure.is_some() {
                run.last_failure = failure;
            }
            if let TaskEnd::Retry { at } = &next {
                run.next_retry_at = Some(at.clone());
                run.tasks.update_all(|name, r| r.done = c.done.contains(name));
            }
            if let TaskEnd::Final(code) | TaskEnd::Halting(code) = next {
                run.status = Status::Finished;
                run.exit_code = Some(code);
                run.halting = matches!(next, TaskEnd::Halting(_));
            }
            run.tasks.set(task, rec);
        }
        let markers = self.state.markers.entry(self.task_dir.clone()).or_default();
        let marked = match next {
            TaskEnd::Once if ok => markers.once.insert(task.into(), now()).is_none(),
            TaskEnd::OncePerBoot if ok => markers.once_per_boot.insert(task.into(), boot.clone()) != Some(boot),
            _ => false,
        };
        // The copy first: a crash between the two leaves the marker in one
        // of them, and the two are merged at open.
        if marked {
            self.save_markers()?;
        }
        self.commit(true)
    }

    /// The run ends by halting (`-H` after the last iteration): recorded
    /// durably before the halt task starts.
    pub fn halting(&mut self, code: i32) -> io::Result<()> {
        if let Some(run) = self.run_mut() {
            run.status = Status::Finished;
            run.exit_code = Some(code);
            run.halting = true;
            run.current = None;
            run.next_retry_at = None;
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
    pub fn already_ran(&self, task: &str, mode: RunMode) -> bool {
        self.state.markers.get(&self.task_dir).is_some_and(|m| m.already_ran(task, mode, &self.boot_id))
    }

    /// Forgets the run-once markers of `task`; whether there were any.
    pub fn forget(&mut self, task: &str) -> io::Result<bool> {
        let Some(m) = self.state.markers.get_mut(&self.task_dir) else { return Ok(false) };
        let had = m.once.remove(task).is_some() | m.once_per_boot.remove(task).is_some();
        if had {
            self.state.markers.retain(|_, m| !m.is_empty());
            self.save_markers()?;
            self.commit(true)?;
        }
        Ok(had)
    }

    /// The log folder of an iteration of a run, created 0700; older folders
    /// beyond `keep` are pruned. `None` with `keep_logs = 0` or when it cannot be made.
    pub fn log_dir(&self, run_id: &str, iteration: u64, keep: u32) -> Option<LogDir> {
        if keep == 0 {
            return None;
        }
        match LogDir::create(&self.dir, run_id, iteration, keep as usize) {
            Ok(d) => Some(d),
            Err(e) => {
                crate::logging::warn(&format!(
                    "{}: cannot create the log folder: {e}; task logs are off",
                    self.dir.path.join(super::logs::LOGS_DIR).join(super::logs::unit_name(run_id, iteration)).display()
                ));
                None
            }
        }
    }
}

/// What a task's end means for the journal.
pub enum TaskEnd {
    Continue,
    /// OK of a `run = once` task.
    Once,
    /// OK of a `run = once-per-boot` task.
    OncePerBoot,
    /// A retry follows at this time.
    Retry {
        at: String,
    },
    /// The run ends with this code.
    Final(i32),
    /// The run ends with this code, and the halt task runs next.
    Halting(i32),
}
