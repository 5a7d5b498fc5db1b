//! `--status [--json]`: what this chain is doing now or did last, read from
//! the journal without taking the lock (as `cloud-init status`).

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Result, code};
use crate::settings::Settings;
use crate::state::{State, StateDir, Status};

/// The version of the `--status --json` document (docs/status.schema.json).
pub const SCHEMA_VERSION: u32 = 1;

/// The `--status --json` document: named fields, the tasks in plan order
/// (pending ones included), never the journal's internal shape.
fn document(s: &Settings, state: &State, phase: &str) -> Value {
    let dir = s.state_dir.display().to_string();
    let Some(run) = state.run.as_ref().filter(|_| state.task_dir == s.task_dir.to_string_lossy()) else {
        return json!({"schema_version": SCHEMA_VERSION, "state_dir": dir, "phase": "none", "run_id": null,
            "exit_code": null, "tasks": []});
    };
    let index_of = |file: &str| s.tasks.iter().position(|p| p.task.file_str == file);
    let log_of = |file: &str| run.last_failure.as_ref().filter(|f| f.task == file).and_then(|f| f.log_file.clone());
    let tasks: Vec<Value> = s
        .tasks
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let file = p.task.file_str.as_str();
            let rec = run.tasks.get(file);
            json!({
                "file": file,
                "name": p.task.name,
                "index": i + 1,
                "result": rec.map_or("PENDING", |r| r.result.as_ref()),
                "exit_code": run.last_failure.as_ref().filter(|f| f.task == file).and_then(|f| f.exit_code)
                    .or(rec.filter(|r| r.result == "OK").map(|_| 0)),
                "duration_s": rec.map(|r| r.duration_ms as f64 / 1000.0),
                "tries": rec.map(|r| r.try_num),
                "log": log_of(file),
            })
        })
        .collect();
    let current = run.current.as_ref().map(|c| {
        json!({"task": c.task, "index": index_of(&c.task).map(|i| i + 1), "of": s.tasks.len(), "try": c.try_num,
            "since": c.started_at, "attempt_key": c.attempt_key})
    });
    let next_retry = run
        .next_retry_at
        .as_ref()
        .map(|at| json!({"task": run.last_failure.as_ref().map(|f| f.task.clone()), "at": at}));
    let last_failure = run.last_failure.as_ref().map(|f| {
        json!({"task": f.task, "result": f.result, "exit_code": f.exit_code, "signal": f.signal,
            "timed_out": f.timed_out, "try": f.try_num, "at": f.at, "how": f.how, "log": f.log_file})
    });
    json!({
        "schema_version": SCHEMA_VERSION,
        "state_dir": dir,
        "phase": phase,
        "run_id": run.run_id,
        "pid": run.pid,
        "started_at": run.started_at,
        "updated_at": run.updated_at,
        "iteration": run.iteration,
        "try": run.try_num,
        "current": current,
        "next_retry": next_retry,
        "last_failure": last_failure,
        "exit_code": run.exit_code,
        "halting": run.halting,
        "reboot": run.reboot,
        "reboots": run.reboots,
        "reason": run.reason,
        "tasks": tasks,
    })
}

/// `running` (a runner holds the chain lock), `interrupted` (the run did
/// not finish and nobody holds the lock: `--resume` continues it),
/// `cancelled`, `finished`, or `none`. The lock, not the recorded pid,
/// tells: after a reboot the pid belongs to something else.
fn phase(state: &State, dir: &Path) -> &'static str {
    let held = || match StateDir::open(dir).ok().and_then(|d| d.locked()) {
        Some(held) => held,
        None => state.run.as_ref().is_some_and(|r| crate::process::os::pid_alive(r.pid)),
    };
    match &state.run {
        None => "none",
        Some(run) => match run.status {
            Status::Running if held() => "running",
            Status::Running => "interrupted",
            Status::Cancelled => "cancelled",
            Status::Finished => "finished",
            Status::Rebooting => "waiting_for_reboot",
        },
    }
}

/// Prints the status; with `wait`, first waits (at most the timeout) for
/// the runner that holds the chain lock to end. Exits with the last run's
/// code when it ended, 0 while one runs or none is recorded, 75 when the
/// wait timed out.
pub fn show(s: &Settings, as_json: bool, wait: Option<Option<std::time::Duration>>) -> Result<i32> {
    let dir = s.state_dir.as_path();
    if let Some(timeout) = wait {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while StateDir::open(dir).ok().and_then(|d| d.locked()).unwrap_or(false) {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                let _ = writeln!(std::io::stderr(), "runner: the chain is still running (timed out waiting)");
                return Ok(code::LOCKED);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let state = State::load_readonly(dir);
    let phase = phase(&state, dir);
    let exit = match (&state.run, phase) {
        (Some(run), "finished" | "cancelled" | "waiting_for_reboot") => run.exit_code.unwrap_or(code::OK),
        _ => code::OK,
    };
    let mut out = std::io::stdout().lock();
    if as_json {
        let doc = document(s, &state, phase);
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(exit);
    }
    let _ = writeln!(out, "state dir:    {}", dir.display());
    let Some(run) = &state.run else {
        let _ = writeln!(out, "status:       no run recorded for this chain");
        return Ok(code::OK);
    };
    let _ = writeln!(out, "chain:        {}", state.task_dir);
    let status = match (phase, run.exit_code) {
        ("running", _) => format!("running (pid {})", run.pid),
        ("interrupted", _) => format!("interrupted (pid {} is gone); --resume continues it", run.pid),
        ("waiting_for_reboot", _) => match &run.reboot {
            Some(w) => format!(
                "waiting for reboot requested by {} at {} (boot id {}); --resume in the next boot goes on",
                w.task,
                w.requested_at,
                w.boot_id.as_deref().unwrap_or("?")
            ),
            None => "waiting for reboot".to_string(),
        },
        (p, Some(c)) => format!("{p}, exit {c}"),
        (p, None) => p.to_string(),
    };
    let _ = writeln!(out, "status:       {status}");
    let _ = writeln!(out, "run id:       {}", run.run_id);
    let _ = writeln!(out, "started:      {}", run.started_at);
    let _ = writeln!(out, "updated:      {}", run.updated_at);
    let _ = writeln!(out, "iteration:    {}, try {}", run.iteration, run.try_num);
    if let Some(cur) = &run.current {
        let _ = writeln!(out, "current:      {} (try {}) since {}", cur.task, cur.try_num, cur.started_at);
    }
    if let Some(at) = &run.next_retry_at {
        let _ = writeln!(out, "next retry:   {at}");
    }
    if let Some(w) = run.reboot.as_ref().filter(|w| w.boot_id.is_none()) {
        let _ = writeln!(out, "reboot:       {} asked for a reboot when the chain ends ({})", w.task, w.requested_at);
    }
    if run.reboots > 0 {
        let _ = writeln!(out, "reboots:      {} in this run", run.reboots);
    }
    if let Some(reason) = &run.reason {
        let _ = writeln!(out, "reason:       {reason}");
    }
    if !run.tasks.is_empty() {
        let _ = writeln!(out, "tasks:");
        for (task, r) in run.tasks.iter() {
            let secs = r.duration_ms as f64 / 1000.0;
            let _ = writeln!(out, "  {task:<24} {:<9} {secs:>9.3} s  try {}", r.result, r.try_num);
        }
    }
    if let Some(f) = &run.last_failure {
        let log = f.log_file.as_deref().unwrap_or("(no log)");
        let how = match (&f.how, f.exit_code, f.signal, f.timed_out) {
            (Some(how), ..) => how.clone(),
            (None, _, _, true) => "timed out".to_string(),
            (None, Some(c), _, _) => format!("exit {c}"),
            (None, _, Some(s), _) => format!("signal {s}"),
            _ => "did not start".to_string(),
        };
        let _ =
            writeln!(out, "last failure: {} {} ({how}, try {}) at {}; log {log}", f.task, f.result, f.try_num, f.at);
    }
    let markers = state.markers_of(&state.task_dir);
    for (task, since) in &markers.once {
        let _ = writeln!(out, "run once:     {task} done at {since}");
    }
    for task in markers.once_per_instance.keys() {
        let _ = writeln!(out, "once per instance: {task}");
    }
    for task in markers.once_per_boot.keys() {
        let _ = writeln!(out, "once per boot: {task}");
    }
    for (task, fp) in &markers.on_change {
        let _ = writeln!(out, "on change:    {task} last OK at {}", fp.at);
    }
    Ok(exit)
}
