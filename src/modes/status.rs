//! `--status [--json]`: what this chain is doing now or did last, read from
//! the journal without taking the lock (as `cloud-init status`).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::error::{Result, code};
use crate::state::{State, StateDir, Status};

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
        },
    }
}

/// Prints the status; with `wait`, first waits (at most the timeout) for
/// the runner that holds the chain lock to end. Exits with the last run's
/// code when it ended, 0 while one runs or none is recorded, 75 when the
/// wait timed out.
pub fn show(dir: &Path, as_json: bool, wait: Option<Option<std::time::Duration>>) -> Result<i32> {
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
        (Some(run), "finished" | "cancelled") => run.exit_code.unwrap_or(code::OK),
        _ => code::OK,
    };
    let mut out = std::io::stdout().lock();
    if as_json {
        let journal: serde_json::Value =
            state.to_json().ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let doc = json!({"state_dir": dir.to_string_lossy(), "phase": phase, "journal": journal});
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
    for task in markers.once_per_boot.keys() {
        let _ = writeln!(out, "once per boot: {task}");
    }
    Ok(exit)
}
