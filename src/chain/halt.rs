//! The halt task: `TASKDIR/halt_task`, run with the global interpreter,
//! `max_time` and `kill_grace` after a task asked to halt, after a task gave
//! up, and with `-H`. The run is recorded as halting (durably) before it
//! starts. It is terminated like any task when runner gets a signal, and
//! then runner exits 128+N; otherwise its exit status never changes
//! runner's.

use super::Chain;
use super::attempt::command;
use crate::chain::events::fields;
use crate::error::code;
use crate::logging;
use crate::process::Job;
use crate::process::{Exit, signals};

impl Chain<'_> {
    /// Runs the halt task for a run ending with `code`; returns runner's
    /// exit code (`code`, or 128+N when a signal came first or meanwhile).
    pub(super) fn halt(&mut self, iteration: u64, reason: &str, code: i32) -> i32 {
        if let Some(sig) = signals::cancelled() {
            return code::SIGNAL_BASE + sig;
        }
        if reason == "halt-after" {
            self.save(|j| j.halting(code, None));
        }
        let Some(halt) = &self.opts.halt_task else {
            logging::info("no halt task ([runner] halt_task is empty): not halting");
            return code;
        };
        let what = halt.display().to_string();
        self.events.emit("halt_start", fields([("task", what.as_str().into()), ("reason", reason.into())]));
        if !halt.exists() {
            logging::error(&format!("{what}: halt task does not exist; cannot halt"));
            self.events.emit("halt_end", fields([("task", what.as_str().into()), ("error", "does not exist".into())]));
            return code;
        }
        logging::info(&format!("halting: running {what}"));
        let halt = halt.clone();
        let exit = self.run_special(&halt, "halt", iteration, &what);
        self.events.emit("halt_end", ended(&what, &exit));
        match signals::cancelled() {
            Some(sig) => code::SIGNAL_BASE + sig,
            None => code,
        }
    }

    /// Runs the halt or reboot task (`label`) with the global interpreter
    /// and limits, its own log file and the run's variables; kills what it
    /// leaves behind.
    pub(super) fn run_special(&mut self, task: &std::path::Path, label: &str, iteration: u64, what: &str) -> Exit {
        let opts = self.opts;
        let limits = &opts.config.runner.limits;
        let file = task.file_name().unwrap_or_default().to_os_string();
        let log = self.open_log(&file);
        let mut env = opts.env.clone();
        env.extend([
            ("RUNNER_TASK_NAME".into(), crate::settings::discovery::task_name(&file.to_string_lossy()).into()),
            ("RUNNER_TASK".into(), file.clone()),
            ("RUNNER_RUN_ID".into(), self.cursor.run_id.as_str().into()),
            ("RUNNER_ITERATION".into(), iteration.to_string().into()),
        ]);
        if let Some((_, path)) = &log {
            env.push(("RUNNER_LOG_FILE".into(), path.into()));
        }
        let job = Job {
            argv: command(limits.interpreter.value.as_deref(), task.as_os_str()),
            env: &env,
            label,
            what,
            max_time: limits.max_time.value.limit(),
            limit: "max_time",
            kill_grace: limits.kill_grace.value.duration(),
            raw_output: opts.raw_output,
            log: log.as_ref().map(|(l, _)| l),
            tag: None,
        };
        // The metrics say how the run ends before a halt or reboot takes
        // the machine down.
        if let Some(m) = self.metrics.as_mut() {
            m.write(&self.journal.state);
        }
        let started = std::time::SystemTime::now();
        let finished = self.spawner.run(&job);
        self.timeline.add(&crate::state::timeline::Entry::Special {
            kind: label.into(),
            task: file.to_string_lossy().into_owned(),
            start: crate::util::unix_secs(started),
            end: crate::util::unix_secs(started + finished.exit.duration()),
            exit_code: finished.exit.code(),
        });
        if finished.exit.code() != Some(0) {
            logging::warn(&format!("{label} task: {}", finished.exit.describe()));
        }
        if let Some((l, _)) = &log {
            l.note(&format!("{label} task: {}", finished.exit.describe()));
        }
        finished.kill_leftovers();
        finished.exit
    }
}

/// The event fields of a halt or reboot task's end.
pub(super) fn ended(what: &str, exit: &Exit) -> serde_json::Map<String, serde_json::Value> {
    fields([
        ("task", what.into()),
        ("exit_code", exit.code().into()),
        ("signal", exit.signal().into()),
        ("duration_s", crate::util::millis(exit.duration()).into()),
    ])
}
