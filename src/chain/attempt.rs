//! One try of one task: journal start, log, pre hook, the process, the
//! [`Outcome`] (decided once, by `outcome::judge`), the cursor, the journal
//! record, post hook, and what comes next (go on, back off and retry, halt,
//! stop). Everything after the decision renders it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::fingerprint::Taken;
use super::hooks::{self, Attempt, When};
use super::outcome::{Exit, GiveUp, Next, Outcome, RebootCodes, Rules, TaskResult};
use super::{Chain, Step, attempt_key, events::fields};
use crate::error::code;
use crate::logging;
use crate::process::{Job, LogSink, signals};
use crate::settings::Planned;
use crate::settings::config::{RetryFrom, RunMode};
use crate::state::timeline::Entry;
use crate::state::{Failure, TaskEnd, TaskRecord};
use crate::util::unix_secs as secs;

/// What one try needs besides the task: its key, log and environment.
struct Try {
    run_id: String,
    iteration: u64,
    try_num: u32,
    key: String,
    started_at: SystemTime,
    log: Option<(LogSink, PathBuf)>,
    env: Vec<(OsString, OsString)>,
    /// The task's path, and as text for messages.
    path: PathBuf,
    what: String,
    tag: String,
}

impl Try {
    fn log_path(&self) -> Option<String> {
        self.log.as_ref().map(|(_, p)| p.to_string_lossy().into_owned())
    }

    fn note(&self, text: &str) {
        if let Some((l, _)) = &self.log {
            l.note(text);
        }
    }
}

impl Chain<'_> {
    /// One try of task `p`.
    /// `taken` is a `run = on-change` task's fingerprint before the try.
    pub(super) fn attempt(&mut self, p: &Planned, taken: Option<Taken>) -> Result<Step, i32> {
        let t = self.prepare(p);
        let attempt = stats_of(p, &t);
        let job = self.job(p, &t);
        crate::journald::set_task(Some((attempt.task, attempt.try_num)));
        let opts = self.opts;
        let hooks = &opts.config.runner.hooks;
        // The stats object is built only when someone reads it.
        let wants_stats = self.events.enabled() || hooks.any();
        if wants_stats {
            let before = hooks::before(&attempt);
            hooks::call(hooks, When::Before, &before, &job, self.spawner);
            self.events.emit("task_start", before);
        }
        let exit = self.run_task(&job, &attempt);
        let outcome = Outcome::decide(exit, attempt.try_num, t.started_at, &self.rules(p));
        self.advance(p, &outcome);
        t.note(&outcome.line(attempt.task));
        report(&outcome, attempt.task, &self.position);
        self.record(p, &t, &outcome, taken);
        if wants_stats {
            let after = hooks::after(&attempt, &outcome, t.log_path().as_deref());
            hooks::call(hooks, When::After, &after, &job, self.spawner);
            self.events.emit("task_end", after);
        }
        // A signal during the post hook (or anything before it) ends the run
        // here: no next task, no backoff, no halt task.
        if let Some(sig) = signals::cancelled() {
            return Err(code::SIGNAL_BASE + sig);
        }
        crate::journald::set_task(None);
        self.next_step(attempt.task, &outcome)
    }

    /// The try's key (from the cursor), log file and environment; the
    /// journal learns it started.
    fn prepare(&mut self, p: &Planned) -> Try {
        let file = p.task.file_str.as_str();
        let c = &self.cursor;
        let key = attempt_key(&c.run_id, c.iteration, p.task.file(), c.successes_of(file));
        let (run_id, iteration) = (c.run_id.clone(), c.iteration);
        let (try_num, max_tries) = (c.try_num, p.config.limits.max_tries.value);
        self.save(|j| j.task_start(file, try_num, &key));
        let log = self.open_log(p.task.file());
        if let Some((l, _)) = &log {
            l.note(&format!("{file}: try {try_num} of {max_tries}, attempt key {key}"));
        }
        if logging::enabled(logging::Level::Debug) {
            logging::debug(&format!("{file}: starting (try {try_num} of {max_tries})"));
        }
        let mut t = Try {
            run_id,
            iteration,
            try_num,
            tag: format!("RUNNER_ATTEMPT_KEY={key}"),
            key,
            started_at: SystemTime::now(),
            log,
            env: Vec::new(),
            path: p.task.path(&self.opts.task_dir),
            what: String::new(),
        };
        t.what = t.path.display().to_string();
        t.env = self.task_env(p, &t);
        t
    }

    fn job<'t>(&self, p: &'t Planned, t: &'t Try) -> Job<'t> {
        let limits = &p.config.limits;
        let own = limits.max_time.value.limit();
        let max_time = self.within_deadline(own);
        Job {
            argv: command(limits.interpreter.value.as_deref(), t.path.as_os_str()),
            env: &t.env,
            label: &p.task.name,
            what: &t.what,
            // The run's deadline cuts the try short like its own max_time.
            max_time,
            limit: if max_time == own { "max_time" } else { "the run's deadline" },
            kill_grace: limits.kill_grace.value.duration(),
            raw_output: self.opts.raw_output,
            log: t.log.as_ref().map(|(l, _)| l),
            tag: Some(t.tag.as_bytes()),
        }
    }

    fn rules(&self, p: &Planned) -> Rules {
        let l = &p.config.limits;
        Rules {
            max_tries: l.max_tries.value,
            factor: l.backoff_factor.value,
            sleep_time: l.sleep_time.value,
            retry_jitter: l.retry_jitter.value,
            max_sleep_time: self.opts.config.runner.max_sleep_time,
            draw: rand::random::<f64>(),
            reboot: RebootCodes { now: l.reboot_now_exit.value, later: l.reboot_later_exit.value },
            reboots_left: self.journal.state.run.as_ref().map_or(0, |r| r.reboots)
                < self.opts.config.runner.max_reboots,
            past_deadline: self.past_deadline(),
        }
    }

    /// Runs the task (unless runner is already cancelled), kills what a
    /// failed try left behind, and warns about leaked output.
    fn run_task(&mut self, job: &Job, a: &Attempt) -> Exit {
        if let Some(by) = signals::cancelled() {
            return Exit::Cancelled { by, code: None, signal: None, duration: Duration::ZERO };
        }
        let finished = self.spawner.run(job);
        if !matches!(finished.exit, Exit::Exited { code: 0, .. }) {
            finished.kill_leftovers();
        }
        if finished.leaked_output {
            logging::warn(&format!(
                "{}: leaked its output: a process it started still holds stdout/stderr; not waiting for it",
                a.task
            ));
        }
        finished.exit
    }

    /// Moves the cursor past the try: a task that ended OK is done (and its
    /// success counted, which renews its attempt key); a retry is the next
    /// try of the chain, from its first task with `retry_from = start`.
    fn advance(&mut self, p: &Planned, o: &Outcome) {
        let file = &p.task.file_str;
        match o.next {
            Next::Continue | Next::RebootNow | Next::RebootLater => {
                self.oks += 1;
                self.retrying = None;
                self.cursor.succeeded(file);
            }
            Next::Retry => {
                self.retries += 1;
                self.retrying = Some(file.clone());
                self.cursor.try_num += 1;
                if self.opts.config.runner.retry_from == RetryFrom::Start {
                    self.cursor.restart();
                }
            }
            Next::Halt { .. } | Next::Stop { .. } => {}
        }
    }

    /// The journal's record of the try (durable). A halt or a stop is
    /// recorded before it happens, so a machine that halts is never resumed
    /// into the same halt.
    fn record(&mut self, p: &Planned, t: &Try, o: &Outcome, taken: Option<Taken>) {
        let end = match o.next {
            Next::Retry => {
                TaskEnd::Retry { at: crate::util::timestamp(SystemTime::now() + o.delay.unwrap_or_default()) }
            }
            Next::Halt { code } => TaskEnd::Halting { code, reason: o.gave_up.map(GiveUp::as_str) },
            Next::Stop { code } if code < code::SIGNAL_BASE => TaskEnd::Final(code),
            Next::Stop { .. } => TaskEnd::Continue,
            Next::Continue | Next::RebootNow | Next::RebootLater => match p.config.run.value {
                RunMode::Once => TaskEnd::Once,
                RunMode::OncePerBoot => TaskEnd::OncePerBoot,
                RunMode::OncePerInstance => TaskEnd::OncePerInstance,
                RunMode::OnChange => self.settle(p, t, taken),
                RunMode::Always => TaskEnd::Continue,
            },
        };
        let (record, failure) = journal_record(&p.task.file_str, o, t.log_path());
        // Lent to the journal as it is (no copy per task).
        let cursor = std::mem::take(&mut self.cursor);
        let reboot = match o.next {
            Next::RebootNow => Some("now"),
            Next::RebootLater => Some("later"),
            _ => None,
        };
        self.save(|j| j.task_end(&cursor, &p.task.file_str, record, failure, end, reboot));
        self.cursor = cursor;
        self.timeline.add(&Entry::Try {
            task: p.task.file_str.clone(),
            iteration: t.iteration,
            try_num: o.try_num,
            start: secs(o.started_at),
            end: secs(o.finished_at()),
            result: o.result.as_str().into(),
            timed_out: o.exit.timed_out(),
        });
        if let Some(m) = self.metrics.as_mut() {
            m.task_end(&self.journal.state, &p.task.file_str, o.next.is_ok());
        }
    }

    /// After an OK of a `run = on-change` task: its fingerprint from before
    /// the try is recorded, unless an input could not be read or changed
    /// while it ran (then it runs again next time).
    fn settle(&self, p: &Planned, t: &Try, taken: Option<Taken>) -> TaskEnd {
        let file = &p.task.file_str;
        let Some(before) = taken else { return TaskEnd::Continue };
        if !before.problems.is_empty() {
            t.note(&format!("{file}: fingerprint not recorded: an input could not be read"));
            return TaskEnd::Continue;
        }
        let after = super::fingerprint::take(p, self.opts);
        if let Some(problem) = after.problems.first() {
            let msg =
                format!("{file}: after it ran, input {problem}; fingerprint not recorded, it runs again next time");
            logging::warn(&msg);
            t.note(&msg);
            return TaskEnd::Continue;
        }
        if after.fp.digest != before.fp.digest {
            let what = super::fingerprint::changed(&before.fp.parts, &after.fp.parts);
            let msg = format!(
                "{file}: inputs changed while it ran ({what}); fingerprint not recorded, it runs again next time"
            );
            logging::warn(&msg);
            t.note(&msg);
            return TaskEnd::Continue;
        }
        TaskEnd::OnChange(Box::new(before.fp))
    }

    /// After the try: go on, back off and try again, halt, or stop.
    fn next_step(&mut self, file: &str, o: &Outcome) -> Result<Step, i32> {
        match o.next {
            Next::Continue => Ok(Step::Next),
            Next::RebootLater => {
                logging::info(&format!("{file}: asked for a reboot when the chain ends"));
                self.reboot_requested(file, "later");
                Ok(Step::Next)
            }
            Next::RebootNow => {
                logging::info(&format!("{file}: asked for a reboot before the next task"));
                self.reboot_requested(file, "now");
                Err(self.reboot(false))
            }
            Next::Retry => {
                let delay = o.delay.unwrap_or_default();
                let next_try = o.try_num + 1;
                logging::info(&format!("sleeping {:.3} s before try {next_try}", delay.as_secs_f64()));
                super::notify::status(&format!(
                    "sleeping {:.0} s before try {next_try} of {file}",
                    delay.as_secs_f64().ceil()
                ));
                self.events.emit(
                    "sleep",
                    fields([
                        ("seconds", crate::util::millis(delay).into()),
                        ("next_try", next_try.into()),
                        ("task", file.into()),
                    ]),
                );
                // The deadline cuts the sleep short, and the run gives up.
                let slept = SystemTime::now();
                let woken = signals::sleep(self.within_deadline(Some(delay)).unwrap_or(delay));
                let (start, end) = (secs(slept), secs(SystemTime::now()));
                self.timeline.add(&Entry::Sleep { task: file.into(), start, end });
                if let Some(sig) = woken {
                    return Err(code::SIGNAL_BASE + sig);
                }
                if self.past_deadline() {
                    return Err(self.deadline_reached());
                }
                Ok(Step::Again { restart: self.opts.config.runner.retry_from == RetryFrom::Start })
            }
            Next::Halt { code } => {
                match o.gave_up {
                    Some(GiveUp::Deadline) => logging::error(&format!(
                        "{file}: {}; giving up",
                        self.deadline_text().unwrap_or_else(|| "the deadline passed".into())
                    )),
                    Some(GiveUp::MaxReboots) => logging::error(&format!(
                        "{file}: asked for a reboot, but this run already went on after max_reboots ({}) reboots; giving up",
                        self.opts.config.runner.max_reboots
                    )),
                    None if code == code::GAVE_UP => {
                        let tries = if o.try_num == 1 { "try" } else { "tries" };
                        logging::error(&format!("{file}: failed {} {tries}; giving up", o.try_num));
                    }
                    None => {}
                }
                let reason = match o.gave_up {
                    Some(g) => g.as_str(),
                    None if code == code::GAVE_UP => "max_tries",
                    None => "halt",
                };
                let why = if code == code::GAVE_UP { "gave up" } else { "exited 2" };
                super::notify::status(&format!("halting ({file} {why})"));
                Err(self.halt(self.cursor.iteration, reason, code))
            }
            Next::Stop { code } => Err(code),
        }
    }

    /// The task's log file in this iteration's folder, and its path.
    pub(super) fn open_log(&self, file: &std::ffi::OsStr) -> Option<(LogSink, PathBuf)> {
        let dir = self.log_dir.as_ref()?;
        let mut name = file.to_os_string();
        name.push(".log");
        match dir.open(&name) {
            Ok((f, path)) => Some((LogSink::new(f, self.opts.config.runner.max_log_size), path)),
            Err(e) => {
                logging::warn(&format!("{}: cannot open task log: {e}", dir.path.join(&name).display()));
                None
            }
        }
    }

    fn task_env(&self, p: &Planned, t: &Try) -> Vec<(OsString, OsString)> {
        let mut env = self.opts.env.clone();
        env.extend([
            ("RUNNER_TASK".into(), p.task.file().to_os_string()),
            ("RUNNER_TASK_NAME".into(), p.task.name.clone().into()),
            ("RUNNER_TRY_NUM".into(), t.try_num.to_string().into()),
            ("RUNNER_MAX_TRIES".into(), p.config.limits.max_tries.value.to_string().into()),
            ("RUNNER_ITERATION".into(), t.iteration.to_string().into()),
            ("RUNNER_RUN_ID".into(), t.run_id.clone().into()),
            ("RUNNER_ATTEMPT_KEY".into(), t.key.clone().into()),
        ]);
        if let Some(path) = &t.log {
            env.push(("RUNNER_LOG_FILE".into(), path.1.clone().into_os_string()));
        }
        env
    }
}

/// The hook stats' view of the try.
fn stats_of<'t>(p: &'t Planned, t: &'t Try) -> Attempt<'t> {
    Attempt {
        task: &p.task.file_str,
        name: &p.task.name,
        try_num: t.try_num,
        max_tries: p.config.limits.max_tries.value,
        iteration: t.iteration,
        run_id: &t.run_id,
        attempt_key: &t.key,
        started_at: t.started_at,
    }
}

/// The journal's view of a try: its record and, unless OK, the failure.
fn journal_record(file: &str, o: &Outcome, log_file: Option<String>) -> (TaskRecord, Option<Failure>) {
    let record = TaskRecord {
        result: o.result.as_str().into(),
        duration_ms: o.exit.duration().as_millis().min(u64::MAX as u128) as u64,
        try_num: o.try_num,
        successes: 0,
        done: false,
    };
    let failure = (o.result != TaskResult::Ok).then(|| Failure {
        task: file.into(),
        result: o.result.as_str().into(),
        exit_code: o.exit.code(),
        signal: o.exit.signal(),
        timed_out: o.exit.timed_out(),
        try_num: o.try_num,
        at: crate::util::timestamp(o.finished_at()),
        log_file,
        how: Some(o.exit.describe()),
    });
    (record, failure)
}

/// Runner's own line for a try's end (`OK` only at debug level), with the
/// task's place in the iteration: `3/12 30-check-ami: RETRY (exit 1 …)`.
fn report(o: &Outcome, file: &str, position: &str) {
    if o.result == TaskResult::Ok && !logging::enabled(logging::Level::Debug) {
        return;
    }
    let line = format!("{position} {}", o.line(file));
    match o.result {
        TaskResult::Ok => logging::debug(&line),
        TaskResult::Halt | TaskResult::Exit | TaskResult::Cancelled => logging::info(&line),
        TaskResult::Retry => logging::warn(&line),
    }
}

/// `interpreter` words plus the path, or the path alone.
pub(super) fn command(interpreter: Option<&[String]>, path: &std::ffi::OsStr) -> Vec<OsString> {
    let mut argv: Vec<OsString> = interpreter.unwrap_or_default().iter().map(OsString::from).collect();
    argv.push(path.to_os_string());
    argv
}
