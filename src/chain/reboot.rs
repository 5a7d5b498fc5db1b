//! Reboot and continue, and the whole run's deadline.
//!
//! A task that exits `reboot_now_exit` succeeded and the machine must reboot
//! before the next task; `reboot_later_exit`, when the chain ends. The
//! journal records the wait (with this boot's id) before the reboot task
//! (`TASKDIR/reboot_task`, run like the halt task) starts, and runner exits
//! [`code::REBOOT`]. `--resume` in another boot goes on with the same run;
//! in the same boot the reboot did not happen, and the reboot task runs
//! again, at most the asking task's `max_tries` times.
//!
//! The deadline: a run that has lasted `[runner] deadline` (time waiting
//! for a reboot only with `deadline_counts_reboots`) stops its running
//! task like a timeout, starts no further try, and gives up (exit 1, halt
//! task). What an exit means stays `outcome`'s; this module only runs the
//! reboot task and keeps the clock.

use std::time::{Duration, Instant, SystemTime};

use super::Chain;
use super::events::fields;
use crate::error::code;
use crate::logging;
use crate::process::signals;
use crate::state::timeline::Entry;
use crate::util::{parse_timestamp, unix_secs as secs};

impl Chain<'_> {
    /// A task asked for a reboot: the event.
    pub(super) fn reboot_requested(&self, task: &str, when: &str) {
        self.events.emit(
            "reboot_requested",
            fields([("task", task.into()), ("when", when.into()), ("boot_id", self.journal.boot_id().into())]),
        );
        super::notify::status(&format!("{task} asked for a reboot ({when})"));
    }

    /// Waits for the pending reboot: recorded durably (`record`; a task
    /// asking for a reboot now has its end record say so already), then
    /// the reboot task. Runner's exit code: 4, or 128+N after a signal.
    pub(super) fn reboot(&mut self, record: bool) -> i32 {
        if record {
            self.save(|j| j.reboot_wait());
        }
        self.run_reboot_task()
    }

    /// The reboot task, or a message that there is none; exit 4 either way
    /// (128+N when a signal came).
    fn run_reboot_task(&mut self) -> i32 {
        if let Some(sig) = signals::cancelled() {
            return code::SIGNAL_BASE + sig;
        }
        let waiting = self.journal.state.run.as_ref().and_then(|r| r.reboot.as_ref());
        let asked = waiting.map(|w| w.task.clone()).unwrap_or_default();
        super::notify::status(&format!("waiting for reboot requested by {asked}"));
        let Some(task) = self.opts.reboot_task.clone() else {
            logging::warn(
                "no reboot task ([runner] reboot_task is empty): not rebooting; exit 4 so that a wrapper reboots",
            );
            return code::REBOOT;
        };
        let what = task.display().to_string();
        if !task.exists() {
            logging::warn(&format!(
                "{what}: reboot task does not exist: not rebooting; exit 4 so that a wrapper reboots"
            ));
            self.events
                .emit("reboot_task", fields([("task", what.as_str().into()), ("error", "does not exist".into())]));
            return code::REBOOT;
        }
        logging::info(&format!("rebooting: running {what} (then --resume goes on after {asked})"));
        let exit = self.run_special(&task, "reboot", self.cursor.iteration, &what);
        self.events.emit("reboot_task", super::halt::ended(&what, &exit));
        match signals::cancelled() {
            Some(sig) => code::SIGNAL_BASE + sig,
            None => code::REBOOT,
        }
    }

    /// A resumed run that waits for a reboot: in another boot it goes on
    /// (`Ok`); in the same boot the reboot task runs again, or, after the
    /// asking task's `max_tries` runs of it, the run gives up (`Err(code)`).
    pub(super) fn after_reboot(&mut self) -> Result<(), i32> {
        let run = self.journal.state.run.as_ref();
        let Some(w) = run.and_then(|r| r.reboot.clone()).filter(|w| w.boot_id.is_some()) else { return Ok(()) };
        let then = w.boot_id.clone().unwrap_or_default();
        let now = self.journal.boot_id().to_string();
        if then != now {
            let since = w.waiting_since.as_deref().and_then(parse_timestamp).unwrap_or_else(SystemTime::now);
            let waited = SystemTime::now().duration_since(since).unwrap_or_default();
            self.save(|j| j.reboot_resumed(waited.as_millis().min(u64::MAX as u128) as u64));
            let (start, end) = (secs(since), secs(SystemTime::now()));
            self.timeline.add(&Entry::RebootWait { task: w.task.clone(), start, end });
            logging::info(&format!(
                "rebooted as {} asked (boot {then} is over, this is {now}); going on after it",
                w.task
            ));
            self.events.emit(
                "reboot_resumed",
                fields([
                    ("task", w.task.as_str().into()),
                    ("boot_id", now.as_str().into()),
                    ("waited_s", crate::util::millis(waited).into()),
                ]),
            );
            return Ok(());
        }
        let max = self
            .tasks
            .iter()
            .find(|p| p.task.file_str == w.task)
            .map_or(self.opts.config.runner.limits.max_tries.value, |p| p.config.limits.max_tries.value);
        if w.tries >= max {
            logging::error(&format!(
                "{} asked for a reboot at {}, but this is still boot {now} after the reboot task ran {} time(s) \
                 (max_tries {max}); giving up",
                w.task, w.requested_at, w.tries
            ));
            self.save(|j| j.halting(code::GAVE_UP, Some("reboot_failed")));
            return Err(self.halt(self.cursor.iteration, "reboot_failed", code::GAVE_UP));
        }
        logging::warn(&format!(
            "still boot {now}: the reboot {} asked for did not happen; running the reboot task again (try {} of {max})",
            w.task,
            w.tries + 1
        ));
        Err(self.reboot(true))
    }

    /// The end of an iteration: a reboot asked for "later" is waited for
    /// now (`Err(code)`); `--resume` after it goes on with the next
    /// iteration, or finishes the run after the last.
    pub(super) fn reboot_if_pending(&mut self) -> Result<(), i32> {
        let pending =
            self.journal.state.run.as_ref().and_then(|r| r.reboot.as_ref()).is_some_and(|w| w.boot_id.is_none());
        if pending { Err(self.reboot(true)) } else { Ok(()) }
    }

    /// Starts the deadline's clock: the run's age (from the journal, for a
    /// resumed run), less its reboot waits unless they count.
    pub(super) fn start_deadline(&mut self) {
        let runner = &self.opts.config.runner;
        let Some(limit) = runner.deadline else { return };
        let run = self.journal.state.run.as_ref();
        let started = run.and_then(|r| parse_timestamp(&r.started_at)).unwrap_or_else(SystemTime::now);
        let age = SystemTime::now().duration_since(started).unwrap_or_default();
        let waits = if runner.deadline_counts_reboots {
            Duration::ZERO
        } else {
            Duration::from_millis(run.map_or(0, |r| r.reboot_wait_ms))
        };
        let used = age.saturating_sub(waits);
        self.deadline = Some(Instant::now() + limit.duration().saturating_sub(used));
    }

    /// Whether the run's deadline has passed.
    pub(super) fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// `limit`, shortened to what is left before the deadline.
    pub(super) fn within_deadline(&self, limit: Option<Duration>) -> Option<Duration> {
        let Some(d) = self.deadline else { return limit };
        let left = d.saturating_duration_since(Instant::now());
        Some(limit.map_or(left, |l| l.min(left)))
    }

    /// `the run's deadline (60 s) passed`.
    pub(super) fn deadline_text(&self) -> Option<String> {
        let d = self.opts.config.runner.deadline?;
        Some(format!("the run's deadline ({} s) passed", d.0))
    }

    /// The deadline passed between tries: no further try; the run gives up.
    pub(super) fn deadline_reached(&mut self) -> i32 {
        logging::error(&format!("{}; giving up", self.deadline_text().unwrap_or_default()));
        self.save(|j| j.halting(code::GAVE_UP, Some("deadline")));
        self.halt(self.cursor.iteration, "deadline", code::GAVE_UP)
    }
}
