//! `--check` and `--dry-run`: what runner would do, without running
//! anything. Must not take the lock or write anything.

use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use crate::chain::{fingerprint, outcome};
use crate::error::{Result, code};
use crate::settings::cli::Cli;
use crate::settings::config::{Diags, Input, Origin, RunMode, Secs, Val};
use crate::settings::discovery::SkipReason;
use crate::settings::ini::Ini;
use crate::settings::{self, Settings};
use crate::state::{self, State};

/// `--check`: every problem, one line each (`file:line: error|warning:
/// message`); exit 78 when there is an error, else 0.
pub fn check(cli: &Cli) -> Result<i32> {
    let mut diags = Diags::default();
    let opts = settings::inspect(cli, &mut diags, true);
    let mut out = std::io::stdout().lock();
    let tasks = opts.as_ref().map_or(0, |o| o.tasks.len());
    if cli.json {
        let list = |ds: &[crate::error::Diag]| -> Vec<Value> {
            ds.iter().map(|d| serde_json::json!({"at": d.at, "message": d.msg})).collect()
        };
        let doc = serde_json::json!({"errors": list(&diags.errors), "warnings": list(&diags.warnings), "tasks": tasks});
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(if diags.errors.is_empty() { code::OK } else { code::CONFIG });
    }
    for d in &diags.errors {
        let _ = writeln!(out, "{}", d.with_severity("error"));
    }
    for d in &diags.warnings {
        let _ = writeln!(out, "{}", d.with_severity("warning"));
    }
    let _ = writeln!(out, "{} error(s), {} warning(s), {tasks} task(s)", diags.errors.len(), diags.warnings.len());
    Ok(if diags.errors.is_empty() { code::OK } else { code::CONFIG })
}

fn origin(ini: &Ini, o: &Origin) -> String {
    match o {
        Origin::Default => "default".into(),
        Origin::Config { section, loc } => format!("[{section}] {}", ini.at(*loc)),
    }
}

/// One effective setting and where it came from.
#[derive(Serialize)]
struct Setting<T: Serialize> {
    value: T,
    from: String,
}

impl<T: Serialize> Setting<T> {
    fn of<U>(ini: &Ini, v: &Val<U>, f: impl FnOnce(&U) -> T) -> Setting<T> {
        Setting { value: f(&v.value), from: origin(ini, &v.origin) }
    }
}

/// Seconds as JSON: whole numbers without a fraction.
fn secs(s: &Secs) -> Value {
    if s.0.fract() == 0.0 { Value::from(s.0 as u64) } else { Value::from(s.0) }
}

#[derive(Serialize)]
struct TaskPlan<'a> {
    file: &'a str,
    name: &'a str,
    path: String,
    max_time: Setting<Value>,
    max_tries: Setting<u32>,
    sleep_time: Setting<Value>,
    retry_jitter: Setting<Value>,
    backoff_factor: Setting<f64>,
    /// The sleeps before giving up: the first ones and the total, each as
    /// [shortest, longest] seconds.
    schedule: Schedule,
    kill_grace: Setting<Value>,
    interpreter: Setting<Option<Vec<String>>>,
    depends_on: Setting<Vec<String>>,
    run: Setting<&'static str>,
    inputs: Setting<Vec<String>>,
    /// Why it runs: `run: inputs changed (…)`, `run: never succeeded`, …
    why: String,
}

#[derive(Serialize)]
struct Schedule {
    first: Vec<[f64; 2]>,
    total: [f64; 2],
}

impl Schedule {
    fn of(l: &crate::settings::config::Limits, cap: Option<Secs>) -> Schedule {
        let (first, total) = outcome::schedule(
            l.max_tries.value,
            l.backoff_factor.value,
            l.sleep_time.value,
            l.retry_jitter.value,
            cap,
            5,
        );
        let s = |d: std::time::Duration| crate::util::millis(d);
        Schedule { first: first.iter().map(|(a, b)| [s(*a), s(*b)]).collect(), total: [s(total.0), s(total.1)] }
    }

    /// `1-35 s, 1-40 s, ...; before giving up 4-173 s`.
    fn text(&self, sleeps: u32) -> String {
        let range = |[a, b]: [f64; 2]| match (a == b, b < 60.0) {
            (true, _) => human(a),
            (false, true) => format!("{}-{} s", plain(a), plain(b)),
            (false, false) => format!("{}-{}", human(a), human(b)),
        };
        if self.first.is_empty() {
            return "none (max_tries = 1)".into();
        }
        let mut shown: Vec<String> = self.first.iter().map(|r| range(*r)).collect();
        if sleeps as usize > self.first.len() {
            shown.push("...".into());
        }
        format!("{}; before giving up {}", shown.join(", "), range(self.total))
    }
}

/// Seconds without trailing zeros: `0.25`, `35`.
fn plain(s: f64) -> String {
    let t = format!("{s:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Seconds as a person reads them: `35 s`, `4m10s`, `2h05m`, `3d04h`.
fn human(s: f64) -> String {
    let whole = s.round() as u64;
    match s {
        _ if s < 60.0 => format!("{} s", plain(s)),
        _ if s < 3600.0 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ if s < 86400.0 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86400, whole % 86400 / 3600),
    }
}

#[derive(Serialize)]
struct SkipPlan {
    file: String,
    reason: String,
}

/// The plan: `{"tasks": [...], "skipped": [...]}` and where it runs.
#[derive(Serialize)]
struct Plan<'a> {
    task_dir: String,
    config: Option<String>,
    state_dir: String,
    halt_task: Option<String>,
    times: Option<u64>,
    tasks: Vec<TaskPlan<'a>>,
    skipped: Vec<SkipPlan>,
}

fn plan<'a>(opts: &'a Settings, journal: &State, state_dir: &std::path::Path) -> Plan<'a> {
    let ini = &opts.config.ini;
    let machine = state::Machine::current();
    let markers = journal.markers_of(&opts.task_dir.to_string_lossy());
    let mut tasks = Vec::with_capacity(opts.tasks.len());
    let mut skipped: Vec<SkipPlan> = opts
        .skipped
        .iter()
        .map(|(file, why)| SkipPlan { file: file.to_string_lossy().into_owned(), reason: why.describe() })
        .collect();
    for p in opts.tasks.iter() {
        let l = &p.config.limits;
        let file = p.task.file_str.as_str();
        let mode = p.config.run.value;
        let forced = opts.force.iter().any(|f| f == file);
        let why = if forced {
            "run: forced (--force)".to_string()
        } else if mode == RunMode::OnChange {
            let d = fingerprint::decide(&fingerprint::take(p, opts), markers.on_change.get(file));
            if !d.run {
                skipped.push(SkipPlan { file: file.into(), reason: d.why });
                continue;
            }
            d.why
        } else if markers.already_ran(file, mode, &machine) {
            skipped.push(SkipPlan { file: file.into(), reason: SkipReason::AlreadyRan(mode.as_str()).describe() });
            continue;
        } else if mode == RunMode::Always {
            "run: every iteration (run = always)".to_string()
        } else {
            format!("run: not done yet (run = {})", mode.as_str())
        };
        tasks.push(TaskPlan {
            file,
            name: &p.task.name,
            path: p.task.path(&opts.task_dir).to_string_lossy().into_owned(),
            max_time: Setting::of(ini, &l.max_time, secs),
            max_tries: Setting::of(ini, &l.max_tries, |n| *n),
            sleep_time: Setting::of(ini, &l.sleep_time, secs),
            retry_jitter: Setting::of(ini, &l.retry_jitter, secs),
            backoff_factor: Setting::of(ini, &l.backoff_factor, |f| *f),
            schedule: Schedule::of(l, opts.config.runner.max_sleep_time),
            kill_grace: Setting::of(ini, &l.kill_grace, secs),
            interpreter: Setting::of(ini, &l.interpreter, |i| i.clone()),
            depends_on: Setting { value: p.config.depends_on.clone(), from: origin(ini, &p.config.depends_from) },
            run: Setting::of(ini, &p.config.run, |r| r.as_str()),
            inputs: Setting::of(ini, &p.config.inputs, |i| i.iter().map(Input::written).collect()),
            why,
        });
    }
    Plan {
        task_dir: opts.task_dir.to_string_lossy().into_owned(),
        config: opts.config.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
        state_dir: state_dir.to_string_lossy().into_owned(),
        halt_task: opts.halt_task.as_ref().map(|h| h.to_string_lossy().into_owned()),
        times: opts.times,
        tasks,
        skipped,
    }
}

/// `--dry-run [--json]`: the plan in run order with each effective setting
/// and where it came from, and every file left out and why.
pub fn dry_run(opts: &Settings, json: bool) -> Result<i32> {
    let state_dir = &opts.state_dir;
    let journal = State::load_readonly(state_dir);
    let plan = plan(opts, &journal, state_dir);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let _ = serde_json::to_writer_pretty(&mut out, &plan);
        let _ = writeln!(out);
        return Ok(code::OK);
    }
    let _ = writeln!(out, "plan for {} ({} tasks, in run order):", plan.task_dir, plan.tasks.len());
    for (n, t) in plan.tasks.iter().enumerate() {
        let _ = writeln!(out, "{:>4}. {}  (name {})", n + 1, t.file, t.name);
        let mut rows: Vec<(&str, String, &str)> = vec![
            ("max_time", text(&t.max_time.value), &t.max_time.from),
            ("max_tries", t.max_tries.value.to_string(), &t.max_tries.from),
            ("sleep_time", text(&t.sleep_time.value), &t.sleep_time.from),
            ("retry_jitter", text(&t.retry_jitter.value), &t.retry_jitter.from),
            ("backoff_factor", t.backoff_factor.value.to_string(), &t.backoff_factor.from),
            ("backoff", t.schedule.text(t.max_tries.value.saturating_sub(1)), ""),
            ("kill_grace", text(&t.kill_grace.value), &t.kill_grace.from),
            ("interpreter", t.interpreter.value.as_ref().map_or("-".into(), |w| w.join(" ")), &t.interpreter.from),
            (
                "depends_on",
                if t.depends_on.value.is_empty() { "-".into() } else { t.depends_on.value.join(" ") },
                &t.depends_on.from,
            ),
            ("run", t.run.value.to_string(), &t.run.from),
        ];
        if !t.inputs.value.is_empty() {
            rows.push(("inputs", t.inputs.value.join(", "), &t.inputs.from));
        }
        rows.push(("decision", t.why.clone(), ""));
        for (key, value, from) in rows {
            let line = format!("        {key:<15}{value:<22}{from}");
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    if !plan.skipped.is_empty() {
        let _ = writeln!(out, "skipped:");
        for s in &plan.skipped {
            let _ = writeln!(out, "      {:<28}{}", s.file, s.reason);
        }
    }
    let _ = writeln!(out, "halt task: {}", plan.halt_task.as_deref().unwrap_or("(none: halt_task is empty)"));
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
