//! The journal: the last run of this chain — run id, iteration, try, which
//! tasks finished and how, the attempt-key counters — and the run-once
//! markers of every task directory that used this state directory.
//!
//! It is append-only: every change is one record appended to `state.log`
//! (`CRC32 JSON\n`, numbered), and a task's end is that append plus one
//! `fdatasync` — no rename, no directory sync, and the same few hundred
//! bytes whatever the chain's length. A run's start and end are one synced
//! append each; a task's start and a new iteration are appended without a
//! sync. `state.json` is a snapshot of the whole state with the number of
//! the last record it holds: rewritten (not synced) when a run ends, and
//! durably, with the log truncated, when the log passes [`COMPACT_AT`].
//! Loading reads the snapshot and replays the newer records up to the last
//! whole one: a torn or corrupt tail (a kill mid-append, power loss) is
//! ignored and cut off. A kill at any instant leaves something that loads,
//! and no task end that was synced is lost.
//!
//! The run-once markers have a second durable copy, `markers.json`,
//! written whenever they change; a snapshot that does not load is recovered
//! from it with a warning, and when neither loads runner refuses to run
//! (exit 74) rather than run a once-task a second time.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;

use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};

use super::dir::StateDir;
use super::logs::LogDir;
use crate::error::{Error, Result};
use crate::settings::config::RunMode;

pub const STATE_FILE: &str = "state.json";
pub const LOG_FILE: &str = "state.log";
pub const MARKERS_FILE: &str = "markers.json";

/// The log is compacted into the snapshot once it is this long.
pub const COMPACT_AT: u64 = 1 << 20;

/// The journal: the last run of this chain, and the run-once markers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The number of the last log record this state holds.
    #[serde(default)]
    pub seq: u64,
    /// The (canonical) task directory whose run `run` is.
    pub task_dir: String,
    #[serde(default)]
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
    /// `run = once-per-instance` tasks that succeeded, with the machine's
    /// identity (cloud instance id, else machine id).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub once_per_instance: BTreeMap<String, String>,
    /// `run = on-change` tasks: the fingerprint of their last OK.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on_change: BTreeMap<String, Fingerprint>,
}

/// What a `run = on-change` task's last OK ran with: one digest over every
/// part, and each part's own digest by name (`task file`, `settings`,
/// `[env]`, an input's path, `env:NAME`, `cmd:…`), so that a rerun can say
/// what changed. Digests only: never an `[env]` value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub digest: String,
    /// When it was recorded (the task's end).
    #[serde(default)]
    pub at: String,
    pub parts: BTreeMap<String, String>,
}

/// Who this machine is now: what once-per-boot and once-per-instance
/// markers are compared with.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub boot_id: String,
    pub instance_id: String,
}

impl Machine {
    /// This boot's id and this machine's identity.
    pub fn current() -> Machine {
        Machine { boot_id: boot_id(), instance_id: instance_id() }
    }
}

impl Markers {
    /// Whether a task with this run mode already succeeded (on this
    /// machine, in this boot, or on this instance).
    pub fn already_ran(&self, task: &str, mode: RunMode, m: &Machine) -> bool {
        match mode {
            RunMode::Always => false,
            RunMode::Once => self.once.contains_key(task),
            RunMode::OncePerBoot => self.once_per_boot.get(task).is_some_and(|b| *b == m.boot_id),
            RunMode::OncePerInstance => self.once_per_instance.get(task).is_some_and(|i| *i == m.instance_id),
            // Decided by comparing fingerprints (chain::fingerprint).
            RunMode::OnChange => false,
        }
    }

    /// Whether `task` has any marker or fingerprint.
    fn has(&self, task: &str) -> bool {
        self.once.contains_key(task)
            || self.once_per_boot.contains_key(task)
            || self.once_per_instance.contains_key(task)
            || self.on_change.contains_key(task)
    }

    fn is_empty(&self) -> bool {
        self.once.is_empty()
            && self.once_per_boot.is_empty()
            && self.once_per_instance.is_empty()
            && self.on_change.is_empty()
    }

    /// Adds every marker of `other` that `self` lacks.
    fn absorb(&mut self, other: &Markers) {
        for (k, v) in &other.once {
            self.once.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.once_per_boot {
            self.once_per_boot.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.once_per_instance {
            self.once_per_instance.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &other.on_change {
            self.on_change.entry(k.clone()).or_insert_with(|| v.clone());
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
    /// A task asked for a reboot and runner ran the reboot task: `--resume`
    /// in another boot goes on with the next task.
    Rebooting,
}

/// A reboot a task asked for, while it is pending (`later`) or waited for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootWait {
    /// The task that asked.
    pub task: String,
    /// `now` (before the next task) or `later` (when the chain ends).
    pub when: String,
    pub requested_at: String,
    /// Set when runner starts waiting for the reboot: the boot it waits to
    /// leave and since when.
    #[serde(default)]
    pub boot_id: Option<String>,
    #[serde(default)]
    pub waiting_since: Option<String>,
    /// How often the reboot task ran in that boot.
    #[serde(default)]
    pub tries: u32,
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
    #[serde(default)]
    pub tasks: TaskTable,
    /// The reboot a task asked for, until the run goes on after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<RebootWait>,
    /// Reboots this run went on after.
    #[serde(default)]
    pub reboots: u32,
    /// Milliseconds this run spent waiting for reboots.
    #[serde(default)]
    pub reboot_wait_ms: u64,
    /// Why the run ended when no task's exit says it (`deadline`,
    /// `max_reboots`, `reboot_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// `OK`, `RETRY`, …: kept without an allocation for the known ones.
    pub result: std::borrow::Cow<'static, str>,
    pub duration_ms: u64,
    pub try_num: u32,
    pub successes: u64,
    pub done: bool,
}

impl From<(String, u64, u32, u64, u8)> for TaskRecord {
    fn from((result, duration_ms, try_num, successes, done): (String, u64, u32, u64, u8)) -> TaskRecord {
        let result = match result.as_str() {
            "OK" => "OK".into(),
            "RETRY" => "RETRY".into(),
            "HALT" => "HALT".into(),
            "EXIT" => "EXIT".into(),
            "CANCELLED" => "CANCELLED".into(),
            _ => result.into(),
        };
        TaskRecord { result, duration_ms, try_num, successes, done: done != 0 }
    }
}

impl From<TaskRecord> for (String, u64, u32, u64, u8) {
    fn from(r: TaskRecord) -> (String, u64, u32, u64, u8) {
        (r.result.into_owned(), r.duration_ms, r.try_num, r.successes, u8::from(r.done))
    }
}

/// The per-task records of a run, in the order tasks first finished (each
/// name stored once; read straight into the map, without a JSON tree).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskTable {
    rows: indexmap::IndexMap<String, TaskRecord>,
}

impl TaskTable {
    pub fn get(&self, task: &str) -> Option<&TaskRecord> {
        self.rows.get(task)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &TaskRecord)> {
        self.rows.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Sets a task's record.
    pub fn set(&mut self, task: &str, rec: TaskRecord) {
        match self.rows.get_mut(task) {
            Some(old) => *old = rec,
            None => {
                self.rows.insert(task.to_string(), rec);
            }
        }
    }

    /// Changes every record (a new iteration, a restart).
    pub fn update_all(&mut self, mut f: impl FnMut(&str, &mut TaskRecord)) {
        self.rows.iter_mut().for_each(|(name, r)| f(name, r));
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

/// One change to the state, as appended to the log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    /// A run starts (or resumes: `same` keeps the task table).
    Begin {
        task_dir: String,
        run_id: String,
        pid: u32,
        iteration: u64,
        try_num: u32,
        same: bool,
        at: String,
    },
    Iteration {
        iteration: u64,
        try_num: u32,
        at: String,
    },
    Start {
        task: String,
        try_num: u32,
        attempt_key: String,
        at: String,
    },
    End {
        task: String,
        rec: TaskRecord,
        failure: Option<Box<Failure>>,
        /// The run's try number after this end.
        try_num: u32,
        retry_at: Option<String>,
        /// Every other task is no longer done (a retry from the start).
        reset_done: bool,
        /// The run ends with this code (and halts when `halting`).
        end: Option<(i32, bool)>,
        mark: Option<Mark>,
        /// A reboot the task asked for (waited for at once when `now`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reboot: Option<Box<RebootWait>>,
        /// Why the run ends, when `end` is set for a reason of the run's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        at: String,
    },
    Halting {
        code: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        at: String,
    },
    /// Runner waits for the pending reboot in boot `boot_id` and ran (or
    /// runs again) the reboot task.
    RebootWait {
        boot_id: String,
        at: String,
    },
    /// The reboot happened: the run goes on.
    RebootResumed {
        waited_ms: u64,
        at: String,
    },
    Finish {
        status: Status,
        code: i32,
        at: String,
    },
    Forget {
        task_dir: String,
        task: String,
    },
}

/// A run-once marker set by a task's end.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Mark {
    task_dir: String,
    /// The boot id for `once-per-boot`; none for `once`.
    boot: Option<String>,
    /// The machine's identity for `once-per-instance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// The fingerprint of a `run = on-change` task's OK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Box<Fingerprint>>,
}

/// A numbered record of the log.
#[derive(Serialize, Deserialize)]
struct Record {
    seq: u64,
    #[serde(flatten)]
    op: Op,
}

impl State {
    fn parse(bytes: &[u8]) -> serde_json::Result<State> {
        let mut s: State = serde_json::from_slice(bytes)?;
        if !s.once.is_empty() || !s.once_per_boot.is_empty() {
            let legacy = Markers {
                once: std::mem::take(&mut s.once),
                once_per_boot: std::mem::take(&mut s.once_per_boot),
                ..Markers::default()
            };
            s.markers.entry(s.task_dir.clone()).or_default().absorb(&legacy);
        }
        Ok(s)
    }

    /// Applies one change (when appending, and when replaying the log).
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Begin { task_dir, run_id, pid, iteration, try_num, same, at } => {
                let keep = self.run.take().filter(|_| *same);
                let (started_at, tasks, last_failure, reboot, reboots, reboot_wait_ms) = match keep {
                    Some(old) => {
                        (old.started_at, old.tasks, old.last_failure, old.reboot, old.reboots, old.reboot_wait_ms)
                    }
                    None => (at.clone(), TaskTable::default(), None, None, 0, 0),
                };
                self.version = 2;
                self.task_dir = task_dir.clone();
                self.run = Some(Run {
                    run_id: run_id.clone(),
                    status: Status::Running,
                    pid: *pid,
                    started_at,
                    updated_at: at.clone(),
                    iteration: *iteration,
                    try_num: *try_num,
                    current: None,
                    next_retry_at: None,
                    last_failure,
                    exit_code: None,
                    halting: false,
                    tasks,
                    reboot,
                    reboots,
                    reboot_wait_ms,
                    reason: None,
                });
            }
            Op::Iteration { iteration, try_num, at } => {
                if let Some(run) = self.run_at(at) {
                    run.iteration = *iteration;
                    run.try_num = *try_num;
                    run.tasks.update_all(|_, r| {
                        r.done = false;
                        r.successes = 0;
                    });
                    run.next_retry_at = None;
                }
            }
            Op::Start { task, try_num, attempt_key, at } => {
                if let Some(run) = self.run_at(at) {
                    run.try_num = *try_num;
                    run.next_retry_at = None;
                    let current = Current {
                        task: task.clone(),
                        try_num: *try_num,
                        attempt_key: attempt_key.clone(),
                        started_at: at.clone(),
                    };
                    run.current = Some(current);
                }
            }
            Op::End { .. } => self.apply_end(op),
            Op::RebootWait { boot_id, at } => {
                if let Some(run) = self.run_at(at) {
                    run.status = Status::Rebooting;
                    run.exit_code = Some(crate::error::code::REBOOT);
                    run.current = None;
                    if let Some(w) = run.reboot.as_mut() {
                        if w.boot_id.as_deref() == Some(boot_id.as_str()) {
                            w.tries += 1;
                        } else {
                            (w.boot_id, w.waiting_since, w.tries) = (Some(boot_id.clone()), Some(at.clone()), 1);
                        }
                    }
                }
            }
            Op::RebootResumed { waited_ms, at } => {
                if let Some(run) = self.run_at(at) {
                    run.status = Status::Running;
                    run.exit_code = None;
                    run.reboot = None;
                    run.reboots += 1;
                    run.reboot_wait_ms += waited_ms;
                }
            }
            Op::Halting { code, at, .. } | Op::Finish { code, at, .. } => {
                let status = match op {
                    Op::Finish { status, .. } => *status,
                    _ => Status::Finished,
                };
                if let Some(run) = self.run_at(at) {
                    run.status = status;
                    run.exit_code = Some(*code);
                    run.halting |= matches!(op, Op::Halting { .. });
                    if let Op::Halting { reason: Some(r), .. } = op {
                        run.reason = Some(r.clone());
                    }
                    run.current = None;
                    run.next_retry_at = None;
                }
            }
            Op::Forget { task_dir, task } => {
                if let Some(m) = self.markers.get_mut(task_dir) {
                    m.once.remove(task);
                    m.once_per_boot.remove(task);
                    m.once_per_instance.remove(task);
                    m.on_change.remove(task);
                }
                self.markers.retain(|_, m| !m.is_empty());
            }
        }
    }

    fn apply_end(&mut self, op: &Op) {
        let Op::End { task, rec, failure, try_num, retry_at, reset_done, end, mark, reboot, reason, at } = op else {
            return;
        };
        if let Some(run) = self.run_at(at) {
            run.current = None;
            run.try_num = *try_num;
            if let Some(f) = failure {
                run.last_failure = Some(Failure::clone(f));
            }
            if retry_at.is_some() {
                run.next_retry_at = retry_at.clone();
            }
            if *reset_done {
                run.tasks.update_all(|_, r| r.done = false);
            }
            if let Some((code, halting)) = end {
                run.status = Status::Finished;
                run.exit_code = Some(*code);
                run.halting = *halting;
                run.reason = reason.clone();
            }
            if let Some(w) = reboot {
                if w.boot_id.is_some() {
                    run.status = Status::Rebooting;
                    run.exit_code = Some(crate::error::code::REBOOT);
                }
                run.reboot = Some(RebootWait::clone(w));
            }
            run.tasks.set(task, rec.clone());
        }
        if let Some(m) = mark {
            let markers = self.markers.entry(m.task_dir.clone()).or_default();
            if let Some(fp) = &m.fingerprint {
                markers.on_change.insert(task.clone(), Fingerprint { at: at.clone(), ..Fingerprint::clone(fp) });
                return;
            }
            match (&m.boot, &m.instance) {
                (_, Some(id)) => markers.once_per_instance.insert(task.clone(), id.clone()),
                (Some(boot), None) => markers.once_per_boot.insert(task.clone(), boot.clone()),
                (None, None) => markers.once.insert(task.clone(), at.clone()),
            };
        }
    }

    fn run_at(&mut self, at: &str) -> Option<&mut Run> {
        let run = self.run.as_mut()?;
        run.updated_at = at.to_string();
        Some(run)
    }

    /// Reads the journal for `--status` and `--dry-run`: never writes, never
    /// fails. A journal that is missing or does not load reads as empty.
    pub fn load_readonly(dir: &Path) -> State {
        let Ok(d) = StateDir::open(dir) else { return State::default() };
        let mut state = d.read(STATE_FILE).ok().flatten().and_then(|b| State::parse(&b).ok()).unwrap_or_default();
        if let Ok(log) = d.open_file(LOG_FILE, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            state.replay(io::BufReader::new(log));
        }
        if let Some(file) =
            d.read(MARKERS_FILE).ok().flatten().and_then(|b| serde_json::from_slice::<MarkersFile>(&b).ok())
        {
            absorb_all(&mut state.markers, &file.markers);
        }
        state
    }

    /// Applies the log's records newer than the state, up to the last whole
    /// one, reading it a line at a time. Returns the length of the whole
    /// records (where a torn or corrupt tail starts).
    fn replay(&mut self, mut log: impl io::BufRead) -> u64 {
        let mut good = 0;
        let mut line = Vec::with_capacity(512);
        loop {
            line.clear();
            match log.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Some(record) = parse_record(&line) else { break };
            if record.seq > self.seq {
                self.apply(&record.op);
                self.seq = record.seq;
            }
            good += line.len() as u64;
        }
        good
    }

    /// The markers of one task directory.
    pub fn markers_of(&self, task_dir: &str) -> Markers {
        self.markers.get(task_dir).cloned().unwrap_or_default()
    }

    /// The whole state as JSON (the snapshot).
    pub fn to_json(&self) -> io::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// One log line: `CRC32 JSON\n`, whole and intact, or `None`.
fn parse_record(line: &[u8]) -> Option<Record> {
    let body = line.strip_suffix(b"\n")?;
    let (crc, json) = (body.get(..8)?, body.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    (crc32fast::hash(json) == crc).then(|| serde_json::from_slice(json).ok()).flatten()
}

/// A record as a log line.
fn format_record(record: &Record) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
/// This boot's id (`/proc/sys/kernel/random/boot_id`): what once-per-boot
/// markers and reboot waits compare with. A test override:
/// `RUNNER_BOOT_ID_FILE` names the file to read instead.
pub fn boot_id() -> String {
    let file = std::env::var_os("RUNNER_BOOT_ID_FILE").unwrap_or_else(|| "/proc/sys/kernel/random/boot_id".into());
    std::fs::read_to_string(file).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// This machine's identity, as cloud-init keys its per-instance
/// semaphores: the cloud instance id (`/var/lib/cloud/data/instance-id`)
/// when cloud-init provides one, else `/etc/machine-id`. A test override:
/// `RUNNER_INSTANCE_ID_FILE` names the file to read instead.
pub fn instance_id() -> String {
    let read = |p: &std::ffi::OsStr| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    if let Some(file) = std::env::var_os("RUNNER_INSTANCE_ID_FILE") {
        return read(&file);
    }
    let cloud = read("/var/lib/cloud/data/instance-id".as_ref());
    if !cloud.is_empty() { cloud } else { read("/etc/machine-id".as_ref()) }
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
        assert!(m.already_ran("a", RunMode::Once, &Machine::default()));
        let here = |boot: &str| Machine { boot_id: boot.into(), instance_id: String::new() };
        assert!(m.already_ran("b", RunMode::OncePerBoot, &here("boot")));
        assert!(!m.already_ran("b", RunMode::OncePerBoot, &here("other")));
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

    #[test]
    fn replay_stops_at_a_torn_or_corrupt_record() -> TestResult {
        let op = |i: u64| Op::Start { task: format!("t{i}"), try_num: 1, attempt_key: "k".into(), at: "x".into() };
        let begin = Op::Begin {
            task_dir: "/t".into(),
            run_id: "r".into(),
            pid: 1,
            iteration: 1,
            try_num: 1,
            same: false,
            at: "x".into(),
        };
        let mut log = format_record(&Record { seq: 1, op: begin })?;
        log.extend(format_record(&Record { seq: 2, op: op(2) })?);
        let whole = log.len() as u64;
        let mut torn = format_record(&Record { seq: 3, op: op(3) })?;
        torn.truncate(torn.len() - 5);
        log.extend(&torn);
        let mut s = State::default();
        assert_eq!(s.replay(&log[..]), whole);
        assert_eq!(s.run.as_ref().and_then(|r| r.current.as_ref()).map(|c| c.task.as_str()), Some("t2"));
        // A flipped byte fails the checksum.
        let mut bad = format_record(&Record { seq: 1, op: op(1) })?;
        bad[12] ^= 1;
        assert_eq!(State::default().replay(&bad[..]), 0);
        // Records the snapshot already holds are skipped.
        let mut s = State { seq: 2, ..State::default() };
        s.replay(&log[..]);
        assert!(s.run.is_none());
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
    /// Per task of this iteration: whether it is done (ended OK since the
    /// last restart) and how often it ended OK.
    tasks: BTreeMap<String, Progress>,
}

/// One task's place in the iteration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    done: bool,
    successes: u64,
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
        self.tasks.clear();
    }

    /// How often `task` succeeded in this iteration.
    pub fn successes_of(&self, task: &str) -> u64 {
        self.tasks.get(task).map_or(0, |p| p.successes)
    }

    /// Whether `task` is done in this iteration.
    pub fn is_done(&self, task: &str) -> bool {
        self.tasks.get(task).is_some_and(|p| p.done)
    }

    /// `task` ended OK: done, and one more success (a new attempt key).
    pub fn succeeded(&mut self, task: &str) {
        let p = self.tasks.entry(task.to_string()).or_default();
        p.done = true;
        p.successes += 1;
    }

    /// A retry from the first task: nothing is done any more.
    pub fn restart(&mut self) {
        self.tasks.values_mut().for_each(|p| p.done = false);
    }

    /// How many tasks are done.
    pub fn done_count(&self) -> usize {
        self.tasks.values().filter(|p| p.done).count()
    }
}

/// The state directory of a locked chain and its journal.
pub struct Journal {
    pub dir: StateDir,
    pub state: State,
    /// The log, open for appending.
    log: File,
    log_len: u64,
    /// The canonical task directory of this chain.
    task_dir: String,
    machine: Machine,
    _lock: super::dir::Lock,
}

fn now() -> String {
    crate::util::timestamp(std::time::SystemTime::now())
}

impl Journal {
    /// Creates the state directory (0700; as root, refused with 77 when
    /// another user could steer it), takes the lock and loads the snapshot,
    /// the log and the markers' copy, recovering one from the other. When
    /// neither the snapshot nor the copy loads and `has_run_once` (the chain
    /// has run-once tasks whose markers would be lost), refuses with 74.
    pub fn open(path: &Path, task_dir: &Path, wait: bool, has_run_once: bool) -> Result<Journal> {
        let dir = StateDir::create(path)?;
        let lock = dir.lock(wait)?;
        dir.remove_stale_temp_files();
        let base = dir.path.clone();
        let show = |name: &str| base.join(name).display().to_string();
        let io_err = |name: &str, e: io::Error| Error::State(format!("{}: {e}", show(name)));
        let (mut state, file_markers) = recover(&dir, has_run_once)?;
        let existed = dir.path.join(LOG_FILE).exists();
        let log = dir.open_file(LOG_FILE, OFlags::RDWR | OFlags::CREATE, 0o600).map_err(|e| io_err(LOG_FILE, e))?;
        if !existed {
            // A new file's name is durable only with its directory.
            dir.sync().map_err(|e| io_err(LOG_FILE, e))?;
        }
        let size = log.metadata().map_err(|e| io_err(LOG_FILE, e))?.len();
        let good = state.replay(io::BufReader::new(&log));
        absorb_all(&mut state.markers, &file_markers);
        if good < size {
            crate::logging::warn(&format!(
                "{}: ignored a torn or corrupt tail of {} bytes (a write cut short)",
                show(LOG_FILE),
                size - good
            ));
            log.set_len(good).map_err(|e| io_err(LOG_FILE, e))?;
        }
        let mut journal = Journal {
            dir,
            state,
            log,
            log_len: good,
            task_dir: task_dir.to_string_lossy().into_owned(),
            machine: Machine::current(),
            _lock: lock,
        };
        // The copy is kept equal to the journal's markers (and, for a chain
        // with run-once tasks, exists, so that a lost journal can always be
        // told from one that had none).
        let missing = has_run_once && !journal.dir.path.join(MARKERS_FILE).exists();
        if file_markers != journal.state.markers || missing {
            journal.save_markers().map_err(|e| io_err(MARKERS_FILE, e))?;
        }
        if journal.log_len >= COMPACT_AT {
            journal.compact().map_err(|e| io_err(STATE_FILE, e))?;
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

    /// Applies `op` and appends it to the log; `durable` syncs the log's
    /// data (one `fdatasync`: the file only grows, so no directory sync).
    fn record(&mut self, op: Op, durable: bool) -> io::Result<()> {
        self.state.apply(&op);
        self.state.seq += 1;
        let line = format_record(&Record { seq: self.state.seq, op })?;
        std::os::unix::fs::FileExt::write_all_at(&self.log, &line, self.log_len)?;
        self.log_len += line.len() as u64;
        if durable {
            self.log.sync_data()?;
        }
        Ok(())
    }

    /// Writes the whole state as the snapshot, durably, and empties the log.
    fn compact(&mut self) -> io::Result<()> {
        self.dir.replace(STATE_FILE, &self.state.to_json()?, true)?;
        self.log.set_len(0)?;
        self.log_len = 0;
        Ok(())
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
        let tasks = run
            .tasks
            .iter()
            .filter(|(_, r)| r.done || r.successes > 0)
            .map(|(t, r)| (t.clone(), Progress { done: r.done, successes: r.successes }))
            .collect();
        Some(Cursor { run_id: run.run_id.clone(), iteration: run.iteration, try_num: run.try_num, tasks })
    }

    /// Records the start of a run (durable).
    pub fn begin(&mut self, c: &Cursor) -> io::Result<()> {
        let same =
            self.state.task_dir == self.task_dir && self.state.run.as_ref().is_some_and(|old| old.run_id == c.run_id);
        let op = Op::Begin {
            task_dir: self.task_dir.clone(),
            run_id: c.run_id.clone(),
            pid: std::process::id(),
            iteration: c.iteration,
            try_num: c.try_num,
            same,
            at: now(),
        };
        self.record(op, true)
    }

    /// A new iteration begins: nothing done yet, try 1 (not durable: the
    /// journal of a finished iteration already says every task is done).
    /// A log past [`COMPACT_AT`] is compacted here, so that a chain looping
    /// forever keeps a bounded journal.
    pub fn iteration(&mut self, c: &Cursor) -> io::Result<()> {
        self.record(Op::Iteration { iteration: c.iteration, try_num: c.try_num, at: now() }, false)?;
        if self.log_len >= COMPACT_AT {
            self.compact()?;
        }
        Ok(())
    }

    /// A task starts (not durable).
    pub fn task_start(&mut self, task: &str, try_num: u32, attempt_key: &str) -> io::Result<()> {
        let op = Op::Start { task: task.into(), try_num, attempt_key: attempt_key.into(), at: now() };
        self.record(op, false)
    }

    /// A task ended (durable: one appended record, one data sync), with `c`
    /// already moved on past it: the task's record takes its counters from
    /// the cursor as they are. `failure` becomes the last failure. `next`
    /// records a coming retry, a run-once marker, or that the run ends
    /// (halt, give up, stop) — before the halt task runs, so a machine that
    /// halts is never resumed into the same halt.
    pub fn task_end(
        &mut self,
        c: &Cursor,
        task: &str,
        rec: TaskRecord,
        failure: Option<Failure>,
        next: TaskEnd,
        reboot: Option<&str>,
    ) -> io::Result<()> {
        let ok = rec.result == "OK";
        let rec = TaskRecord { successes: c.successes_of(task), done: c.is_done(task), ..rec };
        let retry_at = match &next {
            TaskEnd::Retry { at } => Some(at.clone()),
            _ => None,
        };
        let reset_done = matches!(next, TaskEnd::Retry { .. }) && c.done_count() == 0;
        let reason = match &next {
            TaskEnd::Halting { reason, .. } => reason.map(String::from),
            _ => None,
        };
        let end = match next {
            TaskEnd::Final(code) => Some((code, false)),
            TaskEnd::Halting { code, .. } => Some((code, true)),
            _ => None,
        };
        let mark = match next {
            TaskEnd::Once if ok && !self.already_ran(task, RunMode::Once) => {
                Some(Mark { task_dir: self.task_dir.clone(), boot: None, instance: None, fingerprint: None })
            }
            TaskEnd::OncePerBoot if ok && !self.already_ran(task, RunMode::OncePerBoot) => {
                let boot = Some(self.machine.boot_id.clone());
                Some(Mark { task_dir: self.task_dir.clone(), boot, instance: None, fingerprint: None })
            }
            TaskEnd::OncePerInstance if ok && !self.already_ran(task, RunMode::OncePerInstance) => {
                let instance = Some(self.machine.instance_id.clone());
                Some(Mark { task_dir: self.task_dir.clone(), boot: None, instance, fingerprint: None })
            }
            TaskEnd::OnChange(fp) if ok => {
                Some(Mark { task_dir: self.task_dir.clone(), boot: None, instance: None, fingerprint: Some(fp) })
            }
            _ => None,
        };
        let op = Op::End {
            task: task.into(),
            rec,
            failure: failure.map(Box::new),
            try_num: c.try_num,
            retry_at,
            reset_done,
            end,
            mark: mark.clone(),
            reboot: reboot.map(|when| {
                Box::new(RebootWait {
                    task: task.into(),
                    when: when.into(),
                    requested_at: now(),
                    boot_id: (when == "now").then(|| self.machine.boot_id.clone()),
                    waiting_since: (when == "now").then(now),
                    tries: u32::from(when == "now"),
                })
            }),
            reason,
            at: now(),
        };
        self.record(op, true)?;
        // The copy too: a crash between the two leaves the marker in one of
        // them, and the two are merged at open.
        if mark.is_some() {
            self.save_markers()?;
        }
        Ok(())
    }

    /// The run ends by halting (`-H` after the last iteration): recorded
    /// durably before the halt task starts.
    pub fn halting(&mut self, code: i32, reason: Option<&str>) -> io::Result<()> {
        self.record(Op::Halting { code, reason: reason.map(String::from), at: now() }, true)
    }

    /// The run ended (durable), and the snapshot is brought up to date (not
    /// synced: the log already holds every change).
    pub fn finish(&mut self, status: Status, code: i32) -> io::Result<()> {
        self.record(Op::Finish { status, code, at: now() }, true)?;
        self.dir.replace(STATE_FILE, &self.state.to_json()?, false)
    }

    /// Whether a run-once task already succeeded (on this machine, or in
    /// this boot).
    pub fn already_ran(&self, task: &str, mode: RunMode) -> bool {
        self.state.markers.get(&self.task_dir).is_some_and(|m| m.already_ran(task, mode, &self.machine))
    }

    /// This boot's id (what a reboot is recognised by).
    pub fn boot_id(&self) -> &str {
        &self.machine.boot_id
    }

    /// Runner waits for the pending reboot in this boot (durable, before
    /// the reboot task runs); again in the same boot counts one more try.
    pub fn reboot_wait(&mut self) -> io::Result<()> {
        self.record(Op::RebootWait { boot_id: self.machine.boot_id.clone(), at: now() }, true)
    }

    /// The reboot happened: the run goes on (durable).
    pub fn reboot_resumed(&mut self, waited_ms: u64) -> io::Result<()> {
        self.record(Op::RebootResumed { waited_ms, at: now() }, true)
    }

    /// The fingerprint of `task`'s last OK (`run = on-change`).
    pub fn fingerprint(&self, task: &str) -> Option<&Fingerprint> {
        self.state.markers.get(&self.task_dir)?.on_change.get(task)
    }

    /// Forgets the run-once markers and fingerprint of `task`; whether
    /// there were any.
    pub fn forget(&mut self, task: &str) -> io::Result<bool> {
        let had = self.state.markers.get(&self.task_dir).is_some_and(|m| m.has(task));
        if had {
            self.record(Op::Forget { task_dir: self.task_dir.clone(), task: task.into() }, true)?;
            self.save_markers()?;
            self.dir.replace(STATE_FILE, &self.state.to_json()?, false)?;
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

/// The snapshot and the markers' copy, recovering one from the other;
/// the copy's markers are returned for merging.
fn recover(dir: &StateDir, has_run_once: bool) -> Result<(State, BTreeMap<String, Markers>)> {
    let state = load(dir, STATE_FILE, State::parse)?;
    let copy = load(dir, MARKERS_FILE, |b| serde_json::from_slice::<MarkersFile>(b))?;
    let show = |name: &str| dir.path.join(name).display().to_string();
    let (state, copy) = match (state, copy) {
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
            let _ = dir.move_aside(LOG_FILE, "unreadable");
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
            crate::logging::warn(&format!("{msg}; starting with an empty state (this chain has no run-once tasks)"));
            for name in [STATE_FILE, LOG_FILE, MARKERS_FILE] {
                let _ = dir.move_aside(name, "unreadable");
            }
            (State::default(), None)
        }
    };
    Ok((state, copy.map(|c| c.markers).unwrap_or_default()))
}

/// What a task's end means for the journal.
pub enum TaskEnd {
    Continue,
    /// OK of a `run = once` task.
    Once,
    /// OK of a `run = once-per-boot` task.
    OncePerBoot,
    /// OK of a `run = once-per-instance` task.
    OncePerInstance,
    /// OK of a `run = on-change` task, with the fingerprint to record.
    OnChange(Box<Fingerprint>),
    /// A retry follows at this time.
    Retry {
        at: String,
    },
    /// The run ends with this code.
    Final(i32),
    /// The run ends with this code, and the halt task runs next; the
    /// reason when the run itself gives up (`deadline`, `max_reboots`).
    Halting {
        code: i32,
        reason: Option<&'static str>,
    },
}
