//! The loop: iterations of the chain, and in each, every task in order:
//! pre hook → process → outcome → post hook → next step.
//!
//! Process handling lives in `process`, the meaning of an exit in
//! `outcome`; this module only sequences them and keeps the counters
//! (iteration, try number, successes per task for the attempt keys).

use std::ffi::OsString;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::config::RetryFrom;
use crate::error::code;
use crate::events::{Events, fields};
use crate::hooks::{self, Attempt, When};
use crate::logging;
use crate::options::{Options, Planned};
use crate::outcome::{self, Exit, Next, TaskResult};
use crate::process::{self, Job};
use crate::signals;

/// Runs the chain as configured and returns runner's exit code.
pub fn run(opts: &Options, events: &Events) -> i32 {
    if opts.tasks.is_empty() {
        logging::info(&format!("{}: no tasks; nothing to do", opts.task_dir.display()));
        return code::OK;
    }
    let run_id = new_run_id();
    logging::debug(&format!("run {run_id}: {} tasks in {}", opts.tasks.len(), opts.task_dir.display()));
    events.emit(
        "run_start",
        fields([
            ("run_id", run_id.as_str().into()),
            ("task_dir", opts.task_dir.to_string_lossy().into()),
            ("tasks", opts.tasks.len().into()),
            ("times", opts.times.into()),
        ]),
    );
    let code = run_iterations(opts, events, &run_id);
    events.emit("run_end", fields([("run_id", run_id.as_str().into()), ("exit_code", code.into())]));
    code
}

fn run_iterations(opts: &Options, events: &Events, run_id: &str) -> i32 {
    let mut iteration: u64 = 0;
    loop {
        iteration += 1;
        if opts.times.is_some_and(|n| iteration > n) {
            break;
        }
        logging::info(&format!("iteration {iteration}"));
        if let Some(code) = run_iteration(opts, events, run_id, iteration) {
            return code;
        }
    }
    if opts.halt_after {
        logging::info("all iterations done; running the halt task (-H)");
        run_halt(opts, events, run_id, iteration - 1, "halt-after");
    }
    code::OK
}

/// One pass over the chain. `None` when every task ended OK; otherwise the
/// exit code runner ends with.
fn run_iteration(opts: &Options, events: &Events, run_id: &str, iteration: u64) -> Option<i32> {
    let mut try_num: u32 = 1;
    let mut successes = vec![0u64; opts.tasks.len()];
    let mut i = 0;
    while i < opts.tasks.len() {
        if let Some(sig) = signals::cancelled() {
            return Some(code::SIGNAL_BASE + sig);
        }
        let p = &opts.tasks[i];
        let limits = &p.config.limits;
        let key = attempt_key(run_id, iteration, &p.task.file, successes[i]);
        let attempt = Attempt {
            task: &p.task.file_str,
            name: &p.task.name,
            try_num,
            max_tries: limits.max_tries.value,
            iteration,
            run_id,
            attempt_key: &key,
            started_at: SystemTime::now(),
        };
        let env = task_env(opts, p, &attempt);
        let what = p.task.path.display().to_string();
        let job = Job {
            argv: command(limits.interpreter.value.as_deref(), p.task.path.as_os_str()),
            env: &env,
            label: &p.task.name,
            what: &what,
            max_time: limits.max_time.value.limit(),
            kill_grace: limits.kill_grace.value.duration(),
            raw_output: opts.raw_output,
        };
        let hooks = &opts.config.runner.hooks;
        let before = hooks::before(&attempt);
        events.emit("task_start", before.clone());
        hooks::call(hooks, When::Before, &before, &job);
        logging::debug(&format!("{}: starting (try {try_num} of {})", p.task.file_str, limits.max_tries.value));
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
                    "{}: leaked its output: a process it started still holds stdout/stderr; not waiting for it",
                    p.task.file_str
                ));
            }
        }
        drop(finished);
        report(p, result, &exit, try_num);
        let after = hooks::after(&attempt, result, &exit, None);
        hooks::call(hooks, When::After, &after, &job);
        events.emit("task_end", after);
        match next {
            Next::Continue => {
                successes[i] += 1;
                i += 1;
            }
            Next::Retry => {
                let delay = outcome::backoff(
                    try_num,
                    limits.sleep_time.value,
                    limits.retry_jitter.value,
                    opts.config.runner.max_sleep_time,
                    rand::random::<f64>(),
                );
                logging::info(&format!("sleeping {:.3} s before try {}", delay.as_secs_f64(), try_num + 1));
                events.emit(
                    "sleep",
                    fields([
                        ("seconds", hooks::millis(delay).into()),
                        ("next_try", (try_num + 1).into()),
                        ("task", p.task.file_str.as_str().into()),
                    ]),
                );
                if let Some(sig) = signals::sleep(delay) {
                    return Some(code::SIGNAL_BASE + sig);
                }
                try_num += 1;
                if opts.config.runner.retry_from == RetryFrom::Start {
                    i = 0;
                }
            }
            Next::Halt { code } => {
                if code == code::GAVE_UP {
                    logging::error(&format!("{}: failed {try_num} tries; giving up", p.task.file_str));
                }
                let reason = if code == code::GAVE_UP { "max_tries" } else { "halt" };
                run_halt(opts, events, run_id, iteration, reason);
                return Some(code);
            }
            Next::Stop { code } => return Some(code),
        }
    }
    None
}

fn report(p: &Planned, result: TaskResult, exit: &Exit, try_num: u32) {
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

/// Runs the halt task with the global interpreter, `max_time` and
/// `kill_grace`. Its exit status never changes runner's.
pub fn run_halt(opts: &Options, events: &Events, run_id: &str, iteration: u64, reason: &str) {
    let halt = &opts.halt_task;
    let what = halt.display().to_string();
    events.emit("halt_start", fields([("task", what.as_str().into()), ("reason", reason.into())]));
    if !halt.exists() {
        logging::error(&format!("{what}: halt task does not exist; cannot halt"));
        events.emit("halt_end", fields([("task", what.as_str().into()), ("error", "does not exist".into())]));
        return;
    }
    logging::info(&format!("halting: running {}", halt.display()));
    let limits = &opts.config.runner.limits;
    let mut env = opts.env.clone();
    let file = halt.file_name().unwrap_or_default().to_os_string();
    env.extend([
        ("RUNNER_TASK_NAME".into(), crate::tasks::task_name(&file.to_string_lossy()).into()),
        ("RUNNER_TASK".into(), file),
        ("RUNNER_RUN_ID".into(), run_id.into()),
        ("RUNNER_ITERATION".into(), iteration.to_string().into()),
    ]);
    let job = Job {
        argv: command(limits.interpreter.value.as_deref(), halt.as_os_str()),
        env: &env,
        label: "halt",
        what: &what,
        max_time: limits.max_time.value.limit(),
        kill_grace: limits.kill_grace.value.duration(),
        raw_output: opts.raw_output,
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

/// A new run id: UTC start time (sortable) and 64 random bits.
pub fn new_run_id() -> String {
    let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
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
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
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
