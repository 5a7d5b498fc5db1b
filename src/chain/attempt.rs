//! One try of one task: journal start, log, pre hook, the process, the
//! outcome, leftovers, the result line, journal end, post hook, and what
//! comes next (go on, back off and retry, halt, stop). What an exit means
//! is decided once, by `outcome::judge`; everything here renders that
//! decision.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{Chain, Position, Step, attempt_key};
use crate::chain::events::fields;
use crate::chain::hooks::{self, Attempt, When};
use crate::chain::outcome::{self, Exit, Next, TaskResult};
use crate::error::code;
use crate::logging;
use crate::process::signals;
use crate::process::{self, Job, LogSink};
use crate::settings::Planned;
use crate::settings::config::{RetryFrom, RunMode};
use crate::state::{Failure, TaskEnd, TaskRecord};

impl Chain<'_> {
    /// One try of task `p`, the `index`-th of this iteration.
    pub(super) fn attempt(&mut self, p: &Planned, pos: &Position, _index: usize) -> Result<Step, i32> {
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
        let env = self.task_env(p, &attempt, log_path.as_deref());
        let what = p.task.path.display().to_string();
        let tag = format!("RUNNER_ATTEMPT_KEY={key}");
        let job = Job {
            argv: command(limits.interpreter.value.as_deref(), p.task.path.as_os_str()),
            env: &env,
            label: &p.task.name,
            what: &what,
            max_time: limits.max_time.value.limit(),
            kill_grace: limits.kill_grace.value.duration(),
            raw_output: self.opts.raw_output,
            log: log.as_ref().map(|(l, _)| l),
            tag: Some(tag.as_bytes()),
        };
        let hooks = &self.opts.config.runner.hooks;
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
        let exit = self.run_task(&job, file);
        let (result, next) = outcome::judge(&exit, try_num, limits.max_tries.value);
        if let Some((l, _)) = &log {
            l.note(&format!("{file}: {} ({}), try {try_num}", result.as_str(), exit.describe()));
        }
        report(p, result, &exit, try_num);
        let delay = (next == Next::Retry).then(|| {
            outcome::backoff(
                try_num,
                limits.sleep_time.value,
                limits.retry_jitter.value,
                self.opts.config.runner.max_sleep_time,
                rand::random::<f64>(),
            )
        });
        self.record(p, &attempt, &exit, result, next, delay, log_path.clone());
        if wants_stats {
            let after = hooks::after(&attempt, result, &exit, log_path.as_deref());
            hooks::call(hooks, When::After, &after, &job);
            self.events.emit("task_end", after);
        }
        // A signal during the post hook (or anything before it) ends the run
        // here: no next task, no backoff, no halt task.
        if let Some(sig) = signals::cancelled() {
            return Err(code::SIGNAL_BASE + sig);
        }
        self.next_step(file, pos, try_num, next, delay)
    }

    /// Runs the task (unless runner is already cancelled), kills what a
    /// failed try left behind, and warns about leaked output.
    fn run_task(&self, job: &Job, file: &str) -> Exit {
        if let Some(by) = signals::cancelled() {
            return Exit::Cancelled { by, code: None, signal: None, duration: Duration::ZERO };
        }
        let finished = process::run(job);
        if !matches!(finished.exit, Exit::Exited { code: 0, .. }) {
            finished.kill_leftovers();
        }
        if finished.leaked_output {
            logging::warn(&format!(
                "{file}: leaked its output: a process it started still holds stdout/stderr; not waiting for it"
            ));
        }
        finished.exit
    }

    /// The journal's record of the try (durable). A halt or a stop is
    /// recorded before it happens, so a machine that halts is never resumed
    /// into the same halt.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        p: &Planned,
        attempt: &Attempt,
        exit: &Exit,
        result: TaskResult,
        next: Next,
        delay: Option<Duration>,
        log_file: Option<String>,
    ) {
        let file = p.task.file_str.as_str();
        let restart = self.opts.config.runner.retry_from == RetryFrom::Start;
        let end = match next {
            Next::Retry => TaskEnd::Retry {
                next_try: attempt.try_num + 1,
                at: hooks::timestamp(SystemTime::now() + delay.unwrap_or_default()),
                restart,
            },
            Next::Halt { code } => TaskEnd::Halting(code),
            Next::Stop { code } if code < code::SIGNAL_BASE => TaskEnd::Final(code),
            Next::Stop { .. } => TaskEnd::Continue,
            Next::Continue => match p.config.run.value {
                RunMode::Once => TaskEnd::Once,
                RunMode::OncePerBoot => TaskEnd::OncePerBoot,
                RunMode::Always => TaskEnd::Continue,
            },
        };
        let record = TaskRecord {
            result: result.as_str().into(),
            duration_ms: exit.duration().as_millis().min(u64::MAX as u128) as u64,
            try_num: attempt.try_num,
            successes: 0,
            done: false,
        };
        let failure = (result != TaskResult::Ok).then(|| Failure {
            task: file.into(),
            result: result.as_str().into(),
            exit_code: exit.code(),
            signal: exit.signal(),
            timed_out: exit.timed_out(),
            try_num: attempt.try_num,
            at: hooks::timestamp(attempt.started_at + exit.duration()),
            log_file,
            how: Some(exit.describe()),
        });
        self.save(|j| j.task_end(file, record, failure, end));
    }

    /// After the try: go on, back off and try again, halt, or stop.
    fn next_step(
        &mut self,
        file: &str,
        pos: &Position,
        try_num: u32,
        next: Next,
        delay: Option<Duration>,
    ) -> Result<Step, i32> {
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
                Ok(Step::Again { restart: self.opts.config.runner.retry_from == RetryFrom::Start })
            }
            Next::Halt { code } => {
                if code == code::GAVE_UP {
                    logging::error(&format!("{file}: failed {try_num} {}; giving up", tries(try_num)));
                }
                let reason = if code == code::GAVE_UP { "max_tries" } else { "halt" };
                Err(self.halt(pos.iteration, reason, code))
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

    fn task_env(&self, p: &Planned, a: &Attempt, log_file: Option<&str>) -> Vec<(OsString, OsString)> {
        let mut env = self.opts.env.clone();
        env.extend([
            ("RUNNER_TASK".into(), p.task.file.clone()),
            ("RUNNER_TASK_NAME".into(), a.name.into()),
            ("RUNNER_TRY_NUM".into(), a.try_num.to_string().into()),
            ("RUNNER_MAX_TRIES".into(), a.max_tries.to_string().into()),
            ("RUNNER_ITERATION".into(), a.iteration.to_string().into()),
            ("RUNNER_RUN_ID".into(), a.run_id.into()),
            ("RUNNER_ATTEMPT_KEY".into(), a.attempt_key.into()),
        ]);
        if let Some(path) = log_file {
            env.push(("RUNNER_LOG_FILE".into(), path.into()));
        }
        env
    }
}

/// "try" or "tries".
fn tries(n: u32) -> &'static str {
    if n == 1 { "try" } else { "tries" }
}

/// The line runner prints for a try's end (only at debug level for `OK`).
fn report(p: &Planned, result: TaskResult, exit: &Exit, try_num: u32) {
    if result == TaskResult::Ok && !logging::enabled(logging::Level::Debug) {
        return;
    }
    let line = format!("{}: {} ({}, try {try_num})", p.task.file_str, result.as_str(), exit.describe());
    match result {
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
