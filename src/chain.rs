//! The loop: iterations of the chain, and in each, every task in order:
//! pre hook → process → outcome → post hook → next step.
//!
//! Process handling lives in `process`, the meaning of an exit in
//! `outcome`; this module only sequences them and keeps the counters
//! (iteration, try number, successes per task for the attempt keys).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::config::{RetryFrom, RunMode};
use crate::error::code;
use crate::events::{Events, fields};
use crate::hooks::{self, Attempt, When};
use crate::logging;
use crate::options::{Options, Planned};
use crate::outcome::{self, Exit, Next, TaskResult};
use crate::process::{self, Job, LogSink};
use crate::signals;
use crate::state::{Failure, Journal, LogDir, Resumed, Status, TaskEnd, TaskRecord};

/// One run of the chain: the options, where events and state go, and the
/// counters of the run.
pub struct Chain<'a> {
    opts: &'a Options,
    events: &'a Events,
    journal: &'a mut Journal,
    run_id: String,
    log_dir: Option<LogDir>,
    save_failed: bool,
}

/// Where one iteration starts (a resumed run starts mid-iteration).
struct Position {
    iteration: u64,
    try_num: u32,
    done: HashSet<String>,
    successes: BTreeMap<String, u64>,
}

/// Runs the chain as configured and returns runner's exit code. With
/// `resume`, an unfinished run recorded in the journal goes on where it
/// stopped.
pub fn run(opts: &Options, events: &Events, journal: &mut Journal, resume: bool) -> crate::error::Result<i32> {
    if opts.tasks.is_empty() {
        logging::info(&format!("{}: no tasks; nothing to do", opts.task_dir.display()));
        return Ok(code::OK);
    }
    let resumed = if resume { journal.resumable() } else { None };
    if resume && resumed.is_none() {
        logging::info("nothing to resume: the last run finished; starting a new run");
    }
    let is_resumed = resumed.is_some();
    let start = resumed.unwrap_or_else(|| Resumed {
        run_id: new_run_id(),
        iteration: 1,
        try_num: 1,
        done: Vec::new(),
        successes: BTreeMap::new(),
    });
    if is_resumed {
        logging::info(&format!(
            "resuming run {} at iteration {}, try {} ({} tasks already done)",
            start.run_id,
            start.iteration,
            start.try_num,
            start.done.len()
        ));
    }
    // A run that cannot be recorded does not start (exit 74): its run-once
    // markers and its progress would be lost.
    journal.begin(&start).map_err(|e| {
        crate::error::Error::State(format!("{}: cannot record the run: {e}", journal.dir.path.display()))
    })?;
    let log_dir = journal.log_dir(&start.run_id, opts.config.runner.keep_logs);
    let mut chain = Chain { opts, events, journal, run_id: start.run_id.clone(), log_dir, save_failed: false };
    events.emit(
        "run_start",
        fields([
            ("run_id", chain.run_id.as_str().into()),
            ("task_dir", opts.task_dir.to_string_lossy().into()),
            ("tasks", opts.tasks.len().into()),
            ("times", opts.times.into()),
            ("resumed", is_resumed.into()),
        ]),
    );
    let first = Position {
        iteration: start.iteration,
        try_num: start.try_num,
        done: start.done.into_iter().collect(),
        successes: start.successes,
    };
    let code = chain.iterations(first);
    let status = if code >= code::SIGNAL_BASE { Status::Cancelled } else { Status::Finished };
    if let Err(e) = chain.journal.finish(status, code) {
        logging::warn(&format!("{}: cannot record the end of the run: {e}", chain.journal.dir.path.display()));
    }
    events.emit("run_end", fields([("run_id", chain.run_id.as_str().into()), ("exit_code", code.into())]));
    Ok(code)
}

impl Chain<'_> {
    fn iterations(&mut self, first: Position) -> i32 {
        let mut pos = first;
        loop {
            if self.opts.times.is_some_and(|n| pos.iteration > n) {
                break;
            }
            logging::info(&format!("iteration {}", pos.iteration));
            match self.iteration(&mut pos) {
                Ok(true) => {}
                Ok(false) => {
                    logging::info("every task is run-once and already done; nothing to do");
                    return code::OK;
                }
                Err(code) => return code,
            }
            pos =
                Position { iteration: pos.iteration + 1, try_num: 1, done: HashSet::new(), successes: BTreeMap::new() };
            if self.opts.times.is_none_or(|n| pos.iteration <= n) {
                self.save(|j| j.iteration(pos.iteration));
            }
        }
        if self.opts.halt_after {
            logging::info("all iterations done; running the halt task (-H)");
            self.halt(pos.iteration - 1, "halt-after");
        }
        code::OK
    }

    /// Applies a journal change; a failure to write it is warned about once
    /// per run (the chain goes on: the journal is a record, not a gate).
    fn save(&mut self, f: impl FnOnce(&mut Journal) -> std::io::Result<()>) {
        if let Err(e) = f(self.journal)
            && !self.save_failed
        {
            self.save_failed = true;
            logging::warn(&format!("{}: cannot write state: {e}; the chain goes on", self.journal.dir.path.display()));
        }
    }

    /// One pass over the chain. `Ok(ran_any)` when every task ended OK (or
    /// was skipped); `Err(code)` when the run ends.
    fn iteration(&mut self, pos: &mut Position) -> Result<bool, i32> {
        let opts = self.opts;
        let mut ran_any = false;
        let mut i = 0;
        while i < opts.tasks.len() {
            if let Some(sig) = signals::cancelled() {
                return Err(code::SIGNAL_BASE + sig);
            }
            let p = &opts.tasks[i];
            let file = p.task.file_str.as_str();
            if pos.done.contains(file) {
                // Done before a resume: counts as progress, not as a skip.
                ran_any = true;
                i += 1;
                continue;
            }
            if self.journal.already_ran(file, p.config.run.value) {
                logging::debug(&format!("{file}: skipped (run = {}: already succeeded)", p.config.run.value.as_str()));
                i += 1;
                continue;
            }
            ran_any = true;
            match self.task(p, pos)? {
                Step::Next => {
                    pos.done.insert(file.to_string());
                    *pos.successes.entry(file.to_string()).or_default() += 1;
                    i += 1;
                }
                Step::Again { restart } => {
                    pos.try_num += 1;
                    if restart {
                        pos.done.clear();
                        i = 0;
                    }
                }
            }
        }
        Ok(ran_any)
    }

    /// One try of one task: hooks, process, outcome, journal, backoff.
    fn task(&mut self, p: &Planned, pos: &Position) -> Result<Step, i32> {
        let opts = self.opts;
        let limits = &p.config.limits;
        let file = p.task.file_str.as_str();
        let try_num = pos.try_num;
        let successes = pos.successes.get(file).copied().unwrap_or(0);
        let run_id = self.run_id.clone();
        let key = attempt_key(&run_id, pos.iteration, &p.task.file, successes);
        let attempt = Attempt {
            task: file,
            name: &p.task.name,
            try_num,
            max_tries: limits.max_tries.value,
            iteration: pos.iteration,
            run_id: &run_id,
            attempt_key: &key,
            started_at: SystemTime::now(),
        };
        self.save(|j| j.task_start(file, try_num, &key));
        let log = self.open_log(&p.task.file);
        if let Some((l, _)) = &log {
            l.note(&format!("{file}: try {try_num} of {}, attempt key {key}", limits.max_tries.value));
        }
        let log_path = log.as_ref().map(|(_, path)| path.to_string_lossy().into_owned());
        let mut env = task_env(opts, p, &attempt);
        if let Some(path) = &log_path {
            env.push(("RUNNER_LOG_FILE".into(), path.into()));
        }
        let what = p.task.path.display().to_string();
        let tag = format!("RUNNER_ATTEMPT_KEY={key}");
        let job = Job {
            argv: command(limits.interpreter.value.as_deref(), p.task.path.as_os_str()),
            env: &env,
            label: &p.task.name,
            what: &what,
            max_time: limits.max_time.value.limit(),
            kill_grace: limits.kill_grace.value.duration(),
            raw_output: opts.raw_output,
            log: log.as_ref().map(|(l, _)| l),
            tag: Some(tag.as_bytes()),
        };
        let hooks = &opts.config.runner.hooks;
        // The stats object is built only when someone reads it.
        let wants_stats = self.events.enabled() || hooks.any();
        if wants_stats {
            let before = hooks::before(&attempt);
            hooks::call(hooks, When::Before, &before, &job);
            self.events.emit("task_start", before);
        }
        if logging::enabled(logging::Level::Debug) {
            logging::debug(&format!("{file}: starting (try {try_num} of {})", limits.max_tries.value));
        }
        let (exit, finished) = match signals::cancelled() {
            Some(sig) => (Exit { cancelled_by: Some(sig), ..Exit::default() }, None),
            None => {
                let f = process::run(&job);
                (f.exit.clone(), Some(f))
            }
        };
        let (result, next) = outcome::judge(&exit, try_num, limits.max_tries.value);
        if let Some(f) = &finished {
            if result != TaskResult::Ok {
                f.kill_leftovers();
            }
            if f.leaked_output {
                logging::warn(&format!(
                    "{file}: leaked its output: a process it started still holds stdout/stderr; not waiting for it"
                ));
            }
        }
        drop(finished);
        report(p, result, &exit, try_num);
        let delay = (next == Next::Retry).then(|| {
            outcome::backoff(
                try_num,
                limits.sleep_time.value,
                limits.retry_jitter.value,
                opts.config.runner.max_sleep_time,
                rand::random::<f64>(),
            )
        });
        let finished_at = hooks::timestamp(attempt.started_at + exit.duration);
        let end = match (next, delay) {
            (Next::Retry, Some(d)) => TaskEnd::Retry {
                next_try: try_num + 1,
                at: hooks::timestamp(SystemTime::now() + d),
                restart: opts.config.runner.retry_from == RetryFrom::Start,
            },
            (Next::Halt { code } | Next::Stop { code }, _) if code < code::SIGNAL_BASE => TaskEnd::Final(code),
            (Next::Continue, _) => match p.config.run.value {
                RunMode::Once => TaskEnd::Once,
                RunMode::OncePerBoot => TaskEnd::OncePerBoot,
                RunMode::Always => TaskEnd::Continue,
            },
            _ => TaskEnd::Continue,
        };
        let record = TaskRecord {
            result: result.as_str().into(),
            duration_ms: exit.duration.as_millis().min(u64::MAX as u128) as u64,
            try_num,
            successes: 0,
            done: false,
        };
        let failure = (result != TaskResult::Ok).then(|| Failure {
            task: file.into(),
            result: result.as_str().into(),
            exit_code: exit.code,
            signal: exit.signal,
            timed_out: exit.timed_out,
            try_num,
            at: finished_at,
            log_file: log_path.clone(),
        });
        self.save(|j| j.task_end(file, record, failure, end));
        if wants_stats {
            let after = hooks::after(&attempt, result, &exit, log_path.as_deref());
            hooks::call(hooks, When::After, &after, &job);
            self.events.emit("task_end", after);
        }
        match next {
            Next::Continue => Ok(Step::Next),
            Next::Retry => {
                let delay = delay.unwrap_or_default();
                logging::info(&format!("sleeping {:.3} s before try {}", delay.as_secs_f64(), try_num + 1));
                self.events.emit(
                    "sleep",
                    fields([
                        ("seconds", hooks::millis(delay).into()),
                        ("next_try", (try_num + 1).into()),
                        ("task", file.into()),
                    ]),
                );
                if let Some(sig) = signals::sleep(delay) {
                    return Err(code::SIGNAL_BASE + sig);
                }
                Ok(Step::Again { restart: opts.config.runner.retry_from == RetryFrom::Start })
            }
            Next::Halt { code } => {
                if code == code::GAVE_UP {
                    logging::error(&format!("{file}: failed {try_num} tries; giving up"));
                }
                let reason = if code == code::GAVE_UP { "max_tries" } else { "halt" };
                self.halt(pos.iteration, reason);
                Err(code)
            }
            Next::Stop { code } => Err(code),
        }
    }

    /// The task's log file in this run's folder, and its path.
    fn open_log(&self, file: &std::ffi::OsStr) -> Option<(LogSink, std::path::PathBuf)> {
        let dir = self.log_dir.as_ref()?;
        let mut name = file.to_os_string();
        name.push(".log");
        match dir.open(&name) {
            Ok((f, path)) => Some((LogSink::new(f), path)),
            Err(e) => {
                logging::warn(&format!("{}: cannot open task log: {e}", dir.path.join(&name).display()));
                None
            }
        }
    }

    /// Runs the halt task with the global interpreter, `max_time` and
    /// `kill_grace`. Its exit status never changes runner's.
    fn halt(&mut self, iteration: u64, reason: &str) {
        let opts = self.opts;
        let events = self.events;
        let halt = &opts.halt_task;
        let what = halt.display().to_string();
        events.emit("halt_start", fields([("task", what.as_str().into()), ("reason", reason.into())]));
        if !halt.exists() {
            logging::error(&format!("{what}: halt task does not exist; cannot halt"));
            events.emit("halt_end", fields([("task", what.as_str().into()), ("error", "does not exist".into())]));
            return;
        }
        logging::info(&format!("halting: running {what}"));
        let limits = &opts.config.runner.limits;
        let file = halt.file_name().unwrap_or_default().to_os_string();
        let log = self.open_log(&file);
        let mut env = opts.env.clone();
        env.extend([
            ("RUNNER_TASK_NAME".into(), crate::tasks::task_name(&file.to_string_lossy()).into()),
            ("RUNNER_TASK".into(), file),
            ("RUNNER_RUN_ID".into(), self.run_id.as_str().into()),
            ("RUNNER_ITERATION".into(), iteration.to_string().into()),
        ]);
        if let Some((_, path)) = &log {
            env.push(("RUNNER_LOG_FILE".into(), path.into()));
        }
        let job = Job {
            argv: command(limits.interpreter.value.as_deref(), halt.as_os_str()),
            env: &env,
            label: "halt",
            what: &what,
            max_time: limits.max_time.value.limit(),
            kill_grace: limits.kill_grace.value.duration(),
            raw_output: opts.raw_output,
            log: log.as_ref().map(|(l, _)| l),
            tag: None,
        };
        let finished = process::run(&job);
        let exit = &finished.exit;
        if let Some(reason) = &exit.spawn_error {
            logging::error(&format!("halt task: {reason}"));
        } else if exit.code != Some(0) {
            logging::warn(&format!("halt task ended with {:?} (signal {:?})", exit.code, exit.signal));
        }
        finished.kill_leftovers();
        events.emit(
            "halt_end",
            fields([
                ("task", what.as_str().into()),
                ("exit_code", exit.code.into()),
                ("signal", exit.signal.into()),
                ("duration_s", hooks::millis(exit.duration).into()),
            ]),
        );
    }
}

/// What the iteration does after a task's try.
enum Step {
    /// The task is done: go on to the next.
    Next,
    /// Try again (at the same task, or from the start).
    Again { restart: bool },
}

fn report(p: &Planned, result: TaskResult, exit: &Exit, try_num: u32) {
    if result == TaskResult::Ok && !logging::enabled(logging::Level::Debug) {
        return;
    }
    let secs = exit.duration.as_secs_f64();
    let how = if let Some(reason) = &exit.spawn_error {
        reason.clone()
    } else if exit.timed_out {
        format!("timed out after {secs:.3} s")
    } else {
        match (exit.code, exit.signal) {
            (Some(c), _) => format!("exit {c} after {secs:.3} s"),
            (_, Some(s)) => format!("killed by signal {s} after {secs:.3} s"),
            _ => format!("after {secs:.3} s"),
        }
    };
    let line = format!("{}: {} ({how}, try {try_num})", p.task.file_str, result.as_str());
    match result {
        TaskResult::Ok => logging::debug(&line),
        TaskResult::Halt | TaskResult::Exit | TaskResult::Cancelled => logging::info(&line),
        TaskResult::Retry => logging::warn(&line),
    }
}

/// `interpreter` words plus the path, or the path alone.
fn command(interpreter: Option<&[String]>, path: &std::ffi::OsStr) -> Vec<OsString> {
    let mut argv: Vec<OsString> = interpreter.unwrap_or_default().iter().map(OsString::from).collect();
    argv.push(path.to_os_string());
    argv
}

fn task_env(opts: &Options, p: &Planned, a: &Attempt) -> Vec<(OsString, OsString)> {
    let mut env = opts.env.clone();
    env.extend([
        ("RUNNER_TASK".into(), p.task.file.clone()),
        ("RUNNER_TASK_NAME".into(), a.name.into()),
        ("RUNNER_TRY_NUM".into(), a.try_num.to_string().into()),
        ("RUNNER_MAX_TRIES".into(), a.max_tries.to_string().into()),
        ("RUNNER_ITERATION".into(), a.iteration.to_string().into()),
        ("RUNNER_RUN_ID".into(), a.run_id.into()),
        ("RUNNER_ATTEMPT_KEY".into(), a.attempt_key.into()),
    ]);
    env
}

/// A new run id: UTC start time to the microsecond (so ids sort in start
/// order) and 64 random bits: `20261127T081500.123456Z-1f2e…`.
pub fn new_run_id() -> String {
    let stamp: String = humantime::format_rfc3339_micros(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{stamp}-{:016x}", rand::random::<u64>())
}

/// The idempotency key of a task: derived from what is already durable (the
/// run id, the iteration, the task file and how many times it has succeeded
/// in this iteration), so it survives a retry and a resume and changes after
/// an OK, without writing anything before the task starts.
pub fn attempt_key(run_id: &str, iteration: u64, file: &std::ffi::OsStr, successes: u64) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h = Sha256::new();
    h.update(run_id.as_bytes());
    h.update([0]);
    h.update(iteration.to_le_bytes());
    h.update(file.as_bytes());
    h.update([0]);
    h.update(successes.to_le_bytes());
    let d = h.finalize();
    let hex = crate::state::hex(&d[..16]);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_keys() {
        let f = std::ffi::OsStr::new("10-a");
        let k = attempt_key("r", 1, f, 0);
        assert_eq!(k.len(), 36);
        assert_eq!(k, attempt_key("r", 1, f, 0));
        assert_ne!(k, attempt_key("r", 1, f, 1));
        assert_ne!(k, attempt_key("r", 2, f, 0));
        assert_ne!(k, attempt_key("s", 1, f, 0));
        assert_ne!(k, attempt_key("r", 1, std::ffi::OsStr::new("10-b"), 0));
    }
}
