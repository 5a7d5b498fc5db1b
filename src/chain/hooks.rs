//! The stats JSON of SPEC §4 and the calls of `task_hook`,
//! `pre_task_hook` and `post_task_hook`.
//!
//! A hook is its configured words plus the JSON as one more argument, run
//! directly (never through a shell) with the task's environment, stdin
//! /dev/null and the task's `max_time`. Its exit status and failures are
//! logged and never change the chain: this module must not decide
//! anything about the task.

use std::ffi::OsString;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::chain::outcome::{Next, Outcome};
use crate::logging;
use crate::process::{Job, Spawner};
use crate::settings::config::Hooks;
pub use crate::util::{millis, timestamp};

/// What identifies one try of one task.
pub struct Attempt<'a> {
    pub task: &'a str,
    pub name: &'a str,
    pub try_num: u32,
    pub max_tries: u32,
    pub iteration: u64,
    pub run_id: &'a str,
    pub attempt_key: &'a str,
    pub started_at: SystemTime,
}

/// The stats object before the task runs (`result` = `RUNNING`); the
/// reference's keys come first, in its order.
pub fn before(a: &Attempt) -> Map<String, Value> {
    // The reference's four keys in the order its json.dumps printed them.
    let v = json!({
        "try_num": a.try_num,
        "max_retries": a.max_tries,
        "task": a.task,
        "result": "RUNNING",
        "name": a.name,
        "iteration": a.iteration,
        "run_id": a.run_id,
        "attempt_key": a.attempt_key,
        "started_at": timestamp(a.started_at),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The stats object after the task: `before` plus how it ended.
pub fn after(a: &Attempt, o: &Outcome, log_file: Option<&str>) -> Map<String, Value> {
    let mut m = before(a);
    m.insert("result".into(), o.result.as_str().into());
    m.insert("exit_code".into(), o.exit.code().into());
    m.insert("signal".into(), o.exit.signal().into());
    m.insert("timed_out".into(), o.exit.timed_out().into());
    m.insert("duration_s".into(), json!(millis(o.exit.duration())));
    m.insert("finished_at".into(), timestamp(o.finished_at()).into());
    m.insert("log_file".into(), log_file.into());
    // Only when the task asked for a reboot: the reference's keys otherwise.
    match o.next {
        Next::RebootNow => m.insert("reboot".into(), "now".into()),
        Next::RebootLater => m.insert("reboot".into(), "later".into()),
        _ => None,
    };
    m
}

/// Whether a hook runs before or after the task.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

/// Calls the hooks configured for `when` with `stats`.
pub fn call(hooks: &Hooks, when: When, stats: &Map<String, Value>, template: &Job, spawner: &mut dyn Spawner) {
    let (specific, key) = match when {
        When::Before => (&hooks.pre, "pre_task_hook"),
        When::After => (&hooks.post, "post_task_hook"),
    };
    let json = python_json(stats);
    for (words, key) in [(&hooks.task, "task_hook"), (specific, key)] {
        let Some(words) = words else { continue };
        let mut argv: Vec<OsString> = words.iter().map(OsString::from).collect();
        argv.push(OsString::from(&json));
        let label = format!("{key} {}", template.label);
        // No tag: the task's escaped daemons are the task's business, not the hook's.
        let job = Job { argv, label: &label, what: key, tag: None, ..*template };
        let finished = spawner.run(&job);
        match &finished.exit {
            crate::chain::outcome::Exit::Exited { code: 0, .. } => {}
            crate::chain::outcome::Exit::Exited { code, .. } => logging::warn(&format!("{key}: exited {code}")),
            other => logging::warn(&format!("{key}: {}", other.describe())),
        }
        finished.kill_leftovers();
    }
}

/// The stats as Python 2's `json.dumps` wrote them, so that hooks that
/// match the reference's text keep matching: `", "` and `": "` separators,
/// and every character outside printable ASCII escaped as `\uXXXX`.
pub fn python_json(stats: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    match serde::Serialize::serialize(stats, &mut ser) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => Value::Object(stats.clone()).to_string(),
    }
}

/// serde_json formatting with Python's default separators and
/// `ensure_ascii`.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(w, "\\u{u:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_json_text() {
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"try_num": 1, "max_retries": 2, "task": "1-caf\u00e9 \ud83d\ude00\u007f\t\"", "result": "RUNNING", "d": 0.25, "l": [1, 2]}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            python_json(&m),
            r#"{"try_num": 1, "max_retries": 2, "task": "1-caf\u00e9 \ud83d\ude00\u007f\t\"", "result": "RUNNING", "d": 0.25, "l": [1, 2]}"#
        );
    }
}
