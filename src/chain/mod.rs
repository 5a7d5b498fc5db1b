//! The loop: one run of the chain — its iterations, and in each, every task
//! in order.
//!
//! - this file: the run (resume, the journal's start and end, iterations,
//!   the task directory listed again at each iteration, `-H`);
//! - [`attempt`]: one try of one task, from its pre hook to what comes next;
//! - [`halt`]: the halt task;
//! - [`outcome`]: what an exit means (the pure, tabled task protocol);
//! - [`hooks`] and [`events`]: the stats JSON for hooks and `--events`.
//!
//! What an exit means is `outcome`'s; running a process is `process`'s;
//! recording is `state`'s. A signal to runner is honoured in every phase:
//! whatever runs is stopped by `process`, and the loop returns 128+N at the
//! next step, never starting a halt task after it.

mod attempt;
pub mod events;
pub mod fingerprint;
mod halt;
pub mod hooks;
mod notify;
pub mod outcome;
mod reboot;
#[cfg(test)]
mod tests;

use std::rc::Rc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result, code};
use crate::logging;
use crate::process::Spawner;
use crate::process::signals;
use crate::settings::config::RunMode;
use crate::settings::{Planned, Settings};
use crate::state::metrics::Metrics;
use crate::state::timeline::{Entry, Timeline};
use crate::state::{Cursor, Journal, LogDir, Status};
use events::{Events, fields};

/// One run of the chain: the settings, where events, state and processes
/// go, the cursor, and the tasks of the current iteration.
pub struct Chain<'a> {
    opts: &'a Settings,
    events: &'a Events,
    journal: &'a mut Journal,
    spawner: &'a mut dyn Spawner,
    /// Where the run is; saved to the journal as is.
    cursor: Cursor,
    /// The tasks of this iteration, in order (the directory is listed
    /// again at the start of every iteration). Shared, so that a try
    /// borrows its task without copying it.
    tasks: Rc<Vec<Planned>>,
    log_dir: Option<LogDir>,
    save_failed: bool,
    /// Where the current task stands in its iteration: `3/12`.
    position: String,
    /// Tries that ended OK, and tries that are retried, in this run.
    oks: u64,
    retries: u64,
    /// Tasks named by `--force` that have not come up yet in this run.
    force: std::collections::HashSet<String>,
    /// The task whose retry comes next: it runs without a new decision.
    retrying: Option<String>,
    /// When the run's `deadline` passes.
    deadline: Option<std::time::Instant>,
    /// What took time, for `--plot`.
    timeline: Timeline,
    /// The Prometheus textfile, when configured.
    metrics: Option<Metrics>,
}

/// Runs the chain as configured and returns runner's exit code. With
/// `resume`, an unfinished run recorded in the journal goes on where it
/// stopped. A run that cannot be recorded at its start is exit 74.
pub fn run(
    opts: &Settings,
    events: &Events,
    journal: &mut Journal,
    spawner: &mut dyn Spawner,
    resume: bool,
) -> Result<i32> {
    if opts.tasks.is_empty() {
        logging::info(&format!("{}: no tasks; nothing to do", opts.task_dir.display()));
        return Ok(code::OK);
    }
    let (cursor, resumed) = start_cursor(journal, resume);
    journal
        .begin(&cursor)
        .map_err(|e| Error::State(format!("{}: cannot record the run: {e}", journal.dir.path.display())))?;
    let mut chain = Chain {
        opts,
        events,
        journal,
        spawner,
        cursor,
        tasks: Rc::clone(&opts.tasks),
        log_dir: None,
        save_failed: false,
        position: String::new(),
        oks: 0,
        retries: 0,
        force: opts.force.iter().cloned().collect(),
        retrying: None,
        deadline: None,
        timeline: Timeline::default(),
        metrics: opts.metrics_file.clone().map(|p| Metrics::new(p, &opts.task_dir.to_string_lossy())),
    };
    chain.timeline = Timeline::open(&chain.journal.dir, &chain.cursor.run_id, opts.config.runner.keep_logs as usize);
    chain.timeline.add(&Entry::Run {
        run_id: chain.cursor.run_id.clone(),
        task_dir: opts.task_dir.to_string_lossy().into_owned(),
        at: crate::util::unix_secs(SystemTime::now()),
        resumed,
    });
    let started = std::time::Instant::now();
    chain.emit_run_start(resumed);
    notify::ready(&format!("starting: {} task(s) in {}", opts.tasks.len(), opts.task_dir.display()));
    let code = match chain.after_reboot() {
        Ok(()) => {
            chain.start_deadline();
            chain.iterations()
        }
        Err(code) => code,
    };
    let status = if code >= code::SIGNAL_BASE { Status::Cancelled } else { Status::Finished };
    // Waiting for a reboot is recorded already, and is not an end (also
    // when the reboot's SIGTERM reaches runner while the reboot task runs).
    let waits = chain.journal.state.run.as_ref().is_some_and(|r| r.status == Status::Rebooting);
    if !waits && let Err(e) = chain.journal.finish(status, code) {
        logging::warn(&format!("{}: cannot record the end of the run: {e}", chain.journal.dir.path.display()));
    }
    chain.timeline.add(&Entry::End { code, at: crate::util::unix_secs(SystemTime::now()) });
    if let Some(m) = chain.metrics.as_mut() {
        m.write(&chain.journal.state);
    }
    let summary = chain.summary(code, started.elapsed());
    logging::info(&summary);
    notify::status(&summary);
    events.emit(
        "run_end",
        fields([
            ("run_id", chain.cursor.run_id.as_str().into()),
            ("exit_code", code.into()),
            ("tasks_ok", chain.oks.into()),
            ("retries", chain.retries.into()),
            ("duration_s", crate::util::millis(started.elapsed()).into()),
            ("summary", summary.as_str().into()),
            ("reason", chain.journal.state.run.as_ref().and_then(|r| r.reason.clone()).into()),
        ]),
    );
    Ok(code)
}

/// Where the run starts: the unfinished run of the journal with `resume`
/// (after killing what its interrupted try left), else a new run; and
/// whether it resumed.
fn start_cursor(journal: &Journal, resume: bool) -> (Cursor, bool) {
    let resumed = if resume { journal.resumable() } else { None };
    match resumed {
        Some(c) => {
            kill_interrupted_attempt(journal);
            logging::info(&format!(
                "resuming run {} at iteration {}, try {} ({} tasks already done)",
                c.run_id,
                c.iteration,
                c.try_num,
                c.done_count()
            ));
            (c, true)
        }
        None => {
            if resume {
                logging::info("nothing to resume: the last run finished; starting a new run");
            }
            (Cursor::start(new_run_id()), false)
        }
    }
}

/// Before a resumed run starts anything: processes that still carry the
/// interrupted attempt's key (the task's group outlived a runner killed
/// with SIGKILL) are killed with their groups, so they never run beside
/// the retry.
fn kill_interrupted_attempt(journal: &Journal) {
    let Some(current) = journal.state.run.as_ref().and_then(|r| r.current.as_ref()) else { return };
    let tag = format!("RUNNER_ATTEMPT_KEY={}", current.attempt_key);
    let killed = crate::process::os::kill_tagged(tag.as_bytes(), 0);
    if !killed.is_empty() {
        logging::warn(&format!(
            "{}: killed {} process(es) left from the interrupted try before resuming",
            current.task,
            killed.len()
        ));
    }
}

impl Chain<'_> {
    /// `finished: 12 task(s) OK, 1 retry, 3m12s; logs in …` (or `ended with
    /// exit N: …`): the line every run ends with.
    fn summary(&self, code: i32, took: std::time::Duration) -> String {
        let how = match code {
            code::OK => "finished".to_string(),
            code::REBOOT => "waiting for a reboot (exit 4; --resume goes on after it)".to_string(),
            _ => format!("ended with exit {code}"),
        };
        let retries = match self.retries {
            0 => "no retries".to_string(),
            1 => "1 retry".to_string(),
            n => format!("{n} retries"),
        };
        let secs = took.as_secs();
        let took =
            if secs >= 60 { format!("{}m{:02}s", secs / 60, secs % 60) } else { format!("{:.1}s", took.as_secs_f64()) };
        let logs = match &self.log_dir {
            Some(d) => format!("; logs in {}", d.path.parent().unwrap_or(&d.path).display()),
            None => String::new(),
        };
        format!("{how}: {} task(s) OK, {retries}, {took}{logs}", self.oks)
    }

    fn emit_run_start(&self, resumed: bool) {
        self.events.emit(
            "run_start",
            fields([
                ("run_id", self.cursor.run_id.as_str().into()),
                ("task_dir", self.opts.task_dir.to_string_lossy().into()),
                ("tasks", self.opts.tasks.len().into()),
                ("times", self.opts.times.into()),
                ("resumed", resumed.into()),
            ]),
        );
    }

    /// The iterations, from the cursor on; the exit code.
    fn iterations(&mut self) -> i32 {
        let mut listed = true;
        while self.opts.times.is_none_or(|n| self.cursor.iteration <= n) {
            if !listed && let Err(code) = self.relist() {
                return code;
            }
            listed = false;
            crate::journald::set_run(&self.cursor.run_id, self.cursor.iteration);
            logging::info(&format!("iteration {}", self.cursor.iteration));
            self.log_dir =
                self.journal.log_dir(&self.cursor.run_id, self.cursor.iteration, self.opts.config.runner.keep_logs);
            match self.iteration() {
                Ok(true) => {}
                Ok(false) => {
                    let why = if self.tasks.is_empty() {
                        "no tasks"
                    } else {
                        "every task was skipped (run-once and done, or on-change and unchanged)"
                    };
                    logging::info(&format!("{why}; nothing to do"));
                    return code::OK;
                }
                Err(code) => return code,
            }
            if let Err(code) = self.reboot_if_pending() {
                return code;
            }
            self.cursor.next_iteration();
            if self.opts.times.is_none_or(|n| self.cursor.iteration <= n) {
                let cursor = std::mem::take(&mut self.cursor);
                self.save(|j| j.iteration(&cursor));
                self.cursor = cursor;
            }
        }
        if let Some(sig) = signals::cancelled() {
            return code::SIGNAL_BASE + sig;
        }
        if self.opts.halt_after {
            logging::info("all iterations done; running the halt task (-H)");
            return self.halt(self.cursor.iteration - 1, "halt-after", code::OK);
        }
        code::OK
    }

    /// Lists the task directory again; a plan error ends the run (78).
    fn relist(&mut self) -> Result<(), i32> {
        match crate::settings::replan(self.opts) {
            Ok(tasks) => {
                self.tasks = Rc::new(tasks);
                Ok(())
            }
            Err(errors) => {
                for e in errors {
                    logging::error(&e);
                }
                logging::error("the task directory changed into a chain that cannot run; stopping");
                Err(code::CONFIG)
            }
        }
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
    fn iteration(&mut self) -> Result<bool, i32> {
        let mut ran_any = false;
        let mut i = 0;
        let tasks = Rc::clone(&self.tasks);
        while i < tasks.len() {
            if let Some(sig) = signals::cancelled() {
                return Err(code::SIGNAL_BASE + sig);
            }
            let p = &tasks[i];
            let file = p.task.file_str.as_str();
            if self.cursor.is_done(file) {
                // Done before a resume: counts as progress, not as a skip.
                ran_any = true;
                i += 1;
                continue;
            }
            let Some(taken) = self.decide(p) else {
                i += 1;
                continue;
            };
            ran_any = true;
            self.position = format!("{}/{}", i + 1, tasks.len());
            // Built only when someone reads it: -v, or a service manager.
            if logging::enabled(logging::Level::Debug) || notify::listening() {
                let progress = format!(
                    "task {} {} (try {} of {})",
                    self.position, p.task.name, self.cursor.try_num, p.config.limits.max_tries.value
                );
                logging::debug(&progress);
                notify::status(&progress);
            }
            if self.past_deadline() {
                return Err(self.deadline_reached());
            }
            match self.attempt(p, taken)? {
                Step::Next => i += 1,
                Step::Again { restart: true } => i = 0,
                Step::Again { restart: false } => {}
            }
        }
        Ok(ran_any)
    }
}

impl Chain<'_> {
    /// Whether task `p` runs now: `None` skips it; `Some` runs it, with
    /// the fingerprint of a `run = on-change` task taken before it starts.
    /// `--force` runs a task the first time it comes up; a retry runs
    /// without a new decision.
    fn decide(&mut self, p: &Planned) -> Option<Option<fingerprint::Taken>> {
        let file = p.task.file_str.as_str();
        let mode = p.config.run.value;
        let forced = self.force.remove(file);
        let retrying = self.retrying.as_deref() == Some(file);
        if mode != RunMode::OnChange {
            if !forced && !retrying && self.journal.already_ran(file, mode) {
                logging::debug(&format!("{file}: skipped (run = {}: already succeeded)", mode.as_str()));
                return None;
            }
            if forced {
                logging::debug(&format!("{file}: run: forced (--force)"));
            }
            return Some(None);
        }
        let taken = fingerprint::take(p, self.opts);
        if let Some(sig) = signals::cancelled() {
            // A signal cut a cmd: input short: nothing runs (the try is
            // recorded as cancelled).
            logging::debug(&format!("{file}: fingerprint cut short by signal {sig}"));
            return Some(Some(taken));
        }
        for problem in &taken.problems {
            logging::warn(&format!("{file}: input {problem}; the task runs and its fingerprint is not recorded"));
        }
        let why = match (forced, retrying) {
            (true, _) => "run: forced (--force)".to_string(),
            (_, true) => "run: retrying".to_string(),
            _ => {
                let d = fingerprint::decide(&taken, self.journal.fingerprint(file));
                if !d.run {
                    logging::debug(&format!("{file}: {}", d.why));
                    return None;
                }
                d.why
            }
        };
        logging::debug(&format!("{file}: {why}"));
        Some(Some(taken))
    }
}

/// What the iteration does after a task's try.
enum Step {
    /// The task is done: go on to the next.
    Next,
    /// Try again (at the same task, or from the start).
    Again { restart: bool },
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
    let hex = crate::util::hex(&d[..16]);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}
