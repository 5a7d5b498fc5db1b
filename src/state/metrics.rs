//! The Prometheus textfile (`[runner] metrics_file`, `--metrics FILE`):
//! node_exporter's textfile collector reads it. Rendered from the journal's
//! run (never from `[env]`) and rewritten atomically — a temporary file in
//! the same directory, mode 0644, renamed over the target, so a symlink
//! there is replaced, never followed — after every task end (once the file
//! is over [`SMALL`], at most once a second, so that a chain of thousands of
//! tasks does not rewrite megabytes after each) and always when the run
//! ends, halts or waits for a reboot.
//!
//! A file that cannot be written is a warning (once a run), never a failed
//! chain. The last success of each task outlives the run through the file
//! itself: it is read back when runner starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::journal::{State, Status};

/// The results a task's `runner_task_last_result` has a series for.
const RESULTS: [&str; 5] = ["OK", "RETRY", "HALT", "EXIT", "CANCELLED"];

/// A file larger than this is rewritten after a task's end no more often
/// than [`EVERY`].
const SMALL: usize = 64 << 10;
const EVERY: Duration = Duration::from_secs(1);

pub struct Metrics {
    path: PathBuf,
    /// The chain label (the task directory).
    chain: String,
    last_write: Option<Instant>,
    /// The size of the last file written.
    last_len: usize,
    warned: bool,
    /// Unix time of each task's last `OK`.
    last_ok: BTreeMap<String, f64>,
    /// Tries this runner started in the run.
    pub tries: u64,
}

impl Metrics {
    /// The metrics of chain `chain`, written to `path`; the last
    /// successes recorded in an earlier file are read back.
    pub fn new(path: PathBuf, chain: &str) -> Metrics {
        let mut last_ok = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("runner_task_last_success_timestamp_seconds{") else { continue };
                let (labels, value) = rest.rsplit_once("} ").unwrap_or_default();
                let Ok(value) = value.trim().parse::<f64>() else { continue };
                if label(labels, "chain").as_deref() == Some(chain)
                    && let Some(task) = label(labels, "task")
                {
                    last_ok.insert(task, value);
                }
            }
        }
        Metrics { path, chain: chain.to_string(), last_write: None, last_len: 0, warned: false, last_ok, tries: 0 }
    }

    /// A task ended (`ok`): the file is rewritten, unless it is large and
    /// was rewritten less than a second ago.
    pub fn task_end(&mut self, state: &State, task: &str, ok: bool) {
        self.tries += 1;
        if ok {
            self.last_ok.insert(task.to_string(), crate::util::unix_secs(SystemTime::now()));
        }
        if self.last_len < SMALL || self.last_write.is_none_or(|t| t.elapsed() >= EVERY) {
            self.write(state);
        }
    }

    /// Rewrites the file now (the run ends, halts or waits for a reboot).
    pub fn write(&mut self, state: &State) {
        self.last_write = Some(Instant::now());
        let text = self.render(state, SystemTime::now());
        self.last_len = text.len();
        if let Err(e) = replace(&self.path, text.as_bytes()) {
            if !self.warned {
                crate::logging::warn(&format!(
                    "{}: cannot write the metrics file: {e}; the chain goes on",
                    self.path.display()
                ));
            }
            self.warned = true;
        }
    }

    /// The Prometheus text format of the run in `state`.
    pub fn render(&self, state: &State, now: SystemTime) -> String {
        let mut out = String::new();
        let chain = format!("chain=\"{}\"", escape(&self.chain));
        let Some(run) = &state.run else { return out };
        let started = parse(&run.started_at);
        let ended = match run.status {
            Status::Running => None,
            _ => parse(&run.updated_at),
        };
        let now_s = crate::util::unix_secs(now);
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{{labels}}} {}", number(*v));
            }
        };
        let one = |v: f64| vec![(chain.clone(), v)];
        metric(
            "runner_run_start_timestamp_seconds",
            "gauge",
            "Start of the current or last run (Unix time).",
            &one(started.unwrap_or(now_s)),
        );
        if let Some(end) = ended {
            metric(
                "runner_run_end_timestamp_seconds",
                "gauge",
                "End of the last run (Unix time); absent while a run goes on.",
                &one(end),
            );
        }
        if let Some(code) = run.exit_code.filter(|_| ended.is_some()) {
            metric(
                "runner_run_exit_code",
                "gauge",
                "Exit code of the last run (0 done, 1 gave up, 2 halted, 3 stopped, 4 waiting for a reboot, 128+N signal).",
                &one(code as f64),
            );
        }
        let phase = match run.status {
            Status::Running => "running",
            Status::Cancelled => "cancelled",
            Status::Finished => "finished",
            Status::Rebooting => "waiting_for_reboot",
        };
        let phases: Vec<(String, f64)> = ["running", "finished", "cancelled", "waiting_for_reboot"]
            .iter()
            .map(|p| (format!("{chain},phase=\"{p}\""), f64::from(u8::from(*p == phase))))
            .collect();
        metric("runner_run_phase", "gauge", "1 for the phase the current or last run is in.", &phases);
        metric(
            "runner_run_duration_seconds",
            "gauge",
            "How long the current or last run has lasted.",
            &one((ended.unwrap_or(now_s) - started.unwrap_or(now_s)).max(0.0)),
        );
        metric("runner_run_iteration", "gauge", "Iteration of the current or last run.", &one(run.iteration as f64));
        metric(
            "runner_run_tries_total",
            "counter",
            "Tries this runner process started in the run.",
            &one(self.tries as f64),
        );
        let tasks: Vec<(&str, &super::journal::TaskRecord)> = run.tasks.iter().map(|(t, r)| (t.as_str(), r)).collect();
        let label = |t: &str| format!("{chain},task=\"{}\"", escape(t));
        let rows = |f: &dyn Fn(&super::journal::TaskRecord) -> f64| -> Vec<(String, f64)> {
            tasks.iter().map(|(t, r)| (label(t), f(r))).collect()
        };
        metric(
            "runner_task_last_duration_seconds",
            "gauge",
            "Duration of the task's last try in the current or last run.",
            &rows(&|r| r.duration_ms as f64 / 1000.0),
        );
        let results: Vec<(String, f64)> = tasks
            .iter()
            .flat_map(|(t, r)| {
                RESULTS
                    .iter()
                    .map(move |res| (format!("{},result=\"{res}\"", label(t)), f64::from(u8::from(r.result == *res))))
            })
            .collect();
        metric(
            "runner_task_last_result",
            "gauge",
            "1 for the result of the task's last try (OK, RETRY, HALT, EXIT, CANCELLED).",
            &results,
        );
        metric("runner_task_tries", "gauge", "Try number of the task's last try.", &rows(&|r| f64::from(r.try_num)));
        let oks: Vec<(String, f64)> = self.last_ok.iter().map(|(t, v)| (label(t), *v)).collect();
        metric(
            "runner_task_last_success_timestamp_seconds",
            "gauge",
            "When the task last ended OK (Unix time), across runs.",
            &oks,
        );
        out
    }
}

/// A label value escaped as the text format wants (`\\`, `\"`, `\n`).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The value of label `name` in `a="x",b="y"` (unescaped).
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let mut out = String::new();
    let mut chars = labels[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.3}") }
}

fn parse(t: &str) -> Option<f64> {
    crate::util::parse_timestamp(t).map(crate::util::unix_secs)
}

/// Writes `bytes` to a temporary file next to `path` (0644) and renames it
/// over `path`.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{}.", name.to_string_lossy())).tempfile_in(dir)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escape_and_read_back() {
        let v = "a\"b\\c\nd";
        let labels = format!("chain=\"/t\",task=\"{}\"", escape(v));
        assert_eq!(label(&labels, "task").as_deref(), Some(v));
        assert_eq!(label(&labels, "chain").as_deref(), Some("/t"));
        assert_eq!(label(&labels, "nope"), None);
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.250");
    }
}
