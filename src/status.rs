//! `--status [--json]`: what this chain is doing now or did last, read from
//! the journal without taking the lock (as `cloud-init status`).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::error::{Result, code};
use crate::state::{State, Status};

/// `running` (the recorded runner is alive), `interrupted` (it died
/// mid-run: `--resume` continues it), `cancelled`, `finished`, or `none`.
fn phase(state: &State) -> &'static str {
    match &state.run {
        None => "none",
        Some(run) => match run.status {
            Status::Running if crate::unix::pid_alive(run.pid) => "running",
            Status::Running => "interrupted",
            Status::Cancelled => "cancelled",
            Status::Finished => "finished",
        },
    }
}

pub fn show(dir: &Path, as_json: bool) -> Result<i32> {
    let state = State::load_readonly(dir)?;
    let phase = phase(&state);
    let mut out = std::io::stdout().lock();
    if as_json {
        let journal: serde_json::Value =
            state.to_json().ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let doc = json!({"state_dir": dir.to_string_lossy(), "phase": phase, "journal": journal});
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(code::OK);
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
        let how = match (f.exit_code, f.signal, f.timed_out) {
            (_, _, true) => "timed out".to_string(),
            (Some(c), _, _) => format!("exit {c}"),
            (_, Some(s), _) => format!("signal {s}"),
            _ => "did not start".to_string(),
        };
        let _ =
            writeln!(out, "last failure: {} {} ({how}, try {}) at {}; log {log}", f.task, f.result, f.try_num, f.at);
    }
    for (task, since) in &state.once {
        let _ = writeln!(out, "run once:     {task} done at {since}");
    }
    for task in state.once_per_boot.keys() {
        let _ = writeln!(out, "once per boot: {task}");
    }
    Ok(code::OK)
}
