//! `--check` and `--dry-run`: what runner would do, without running
//! anything.

use std::io::Write;

use serde_json::{Value, json};

use crate::cli::Cli;
use crate::config::{Diags, Origin, Val};
use crate::error::{Result, code};
use crate::ini::Ini;
use crate::options::{self, Options};
use crate::state::{self, State};
use crate::tasks::SkipReason;

/// `--check`: every problem, one line each (`file:line: error|warning:
/// message`); exit 78 when there is an error, else 0.
pub fn check(cli: &Cli) -> Result<i32> {
    let mut diags = Diags::default();
    let opts = options::inspect(cli, &mut diags, true);
    let mut out = std::io::stdout().lock();
    for d in &diags.errors {
        let _ = writeln!(out, "{}", d.with_severity("error"));
    }
    for d in &diags.warnings {
        let _ = writeln!(out, "{}", d.with_severity("warning"));
    }
    let tasks = opts.as_ref().map_or(0, |o| o.tasks.len());
    let _ = writeln!(out, "{} error(s), {} warning(s), {tasks} task(s)", diags.errors.len(), diags.warnings.len());
    Ok(if diags.errors.is_empty() { code::OK } else { code::CONFIG })
}

fn origin(ini: &Ini, o: &Origin) -> String {
    match o {
        Origin::Default => "default".into(),
        Origin::Config { section, loc } => format!("[{section}] {}", ini.at(*loc)),
    }
}

/// Seconds as JSON: whole numbers without a fraction.
fn secs(v: &Val<crate::config::Secs>) -> Val<Value> {
    let x = v.value.0;
    let value = if x.fract() == 0.0 { Value::from(x as u64) } else { Value::from(x) };
    Val { value, origin: v.origin.clone() }
}

fn setting<T: Into<Value> + Clone>(ini: &Ini, v: &Val<T>) -> Value {
    json!({"value": v.value.clone().into(), "from": origin(ini, &v.origin)})
}

/// The plan as one JSON document: `{"tasks": [...], "skipped": [...]}`.
fn plan_json(opts: &Options, journal: &State, state_dir: &std::path::Path) -> Value {
    let ini = &opts.config.ini;
    let boot = state::boot_id();
    let mut tasks = Vec::new();
    let mut skipped: Vec<Value> = opts
        .skipped
        .iter()
        .map(|(file, why)| json!({"file": file.to_string_lossy(), "reason": why.describe()}))
        .collect();
    for p in &opts.tasks {
        let l = &p.config.limits;
        let file = p.task.file_str.as_str();
        let already = match p.config.run.value {
            crate::config::RunMode::Always => None,
            crate::config::RunMode::Once => journal.once.contains_key(file).then_some("once"),
            crate::config::RunMode::OncePerBoot => {
                journal.once_per_boot.get(file).is_some_and(|b| *b == boot).then_some("once-per-boot")
            }
        };
        if let Some(mode) = already {
            skipped.push(json!({"file": file, "reason": SkipReason::AlreadyRan(mode).describe()}));
            continue;
        }
        let interpreter = Val {
            value: l.interpreter.value.as_ref().map(|w| Value::from(w.clone())).unwrap_or(Value::Null),
            origin: l.interpreter.origin.clone(),
        };
        let run = Val { value: p.config.run.value.as_str(), origin: p.config.run.origin.clone() };
        tasks.push(json!({
            "file": file,
            "name": p.task.name,
            "path": p.task.path.to_string_lossy(),
            "max_time": setting(ini, &secs(&l.max_time)),
            "max_tries": setting(ini, &l.max_tries),
            "sleep_time": setting(ini, &secs(&l.sleep_time)),
            "retry_jitter": setting(ini, &secs(&l.retry_jitter)),
            "kill_grace": setting(ini, &secs(&l.kill_grace)),
            "interpreter": setting(ini, &interpreter),
            "depends_on": {"value": p.config.depends_on, "from": p.config.depends_loc.clone().unwrap_or_else(|| "default".into())},
            "run": setting(ini, &run),
        }));
    }
    json!({
        "task_dir": opts.task_dir.to_string_lossy(),
        "config": opts.config.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
        "state_dir": state_dir.to_string_lossy(),
        "halt_task": opts.halt_task.to_string_lossy(),
        "times": opts.times,
        "tasks": tasks,
        "skipped": skipped,
    })
}

/// `--dry-run [--json]`: the plan in run order with each effective setting
/// and where it came from, and every file left out and why.
pub fn dry_run(cli: &Cli, opts: &Options, state_dir: &std::path::Path) -> Result<i32> {
    let journal = State::load_readonly(state_dir).unwrap_or_default();
    let plan = plan_json(opts, &journal, state_dir);
    let mut out = std::io::stdout().lock();
    if cli.json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
        return Ok(code::OK);
    }
    let empty = Vec::new();
    let tasks = plan["tasks"].as_array().unwrap_or(&empty);
    let _ = writeln!(out, "plan for {} ({} tasks, in run order):", opts.task_dir.display(), tasks.len());
    for (n, t) in tasks.iter().enumerate() {
        let _ = writeln!(out, "{:>4}. {}  (name {})", n + 1, text(&t["file"]), text(&t["name"]));
        for key in
            ["max_time", "max_tries", "sleep_time", "retry_jitter", "kill_grace", "interpreter", "depends_on", "run"]
        {
            let _ = writeln!(out, "        {key:<13}{:<22}{}", text(&t[key]["value"]), text(&t[key]["from"]));
        }
    }
    let skipped = plan["skipped"].as_array().unwrap_or(&empty);
    if !skipped.is_empty() {
        let _ = writeln!(out, "skipped:");
        for s in skipped {
            let _ = writeln!(out, "      {:<28}{}", text(&s["file"]), text(&s["reason"]));
        }
    }
    let _ = writeln!(out, "halt task: {}", opts.halt_task.display());
    Ok(code::OK)
}

/// A JSON value as plain text: strings bare, arrays comma-joined, null as -.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}
