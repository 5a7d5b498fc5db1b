//! INI → validated, typed settings with per-task overrides. Reads files
//! only through `ini`; never touches the task directory's files or state.
//!
//! [`load_ini`] reads the config file and its `include_dir` (that is all
//! `-g` needs). [`Config::from_ini`] turns the `[runner]` and `[env]`
//! sections into typed settings, collecting every problem as a
//! [`Diags`] line (`file:line: message`) instead of stopping at the first.
//! [`Config::task_config`] resolves one task's effective limits from its
//! section, `[runner]` and the built-in defaults, remembering where each value
//! came from.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::error::{Diag, Diags};
use crate::settings::ini::{Entry, Ini, Loc, Section};

/// The smallest `max_log_size` (a cut must leave room for its marker).
pub const MIN_LOG_SIZE: u64 = 4096;

/// Largest number of seconds accepted anywhere (about 136 years): keeps
/// every duration and timestamp computation far from overflow.
pub const MAX_SECS: f64 = u32::MAX as f64;

/// A validated, finite, non-negative number of seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Secs(pub f64);

impl Secs {
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
    pub fn is_whole(self) -> bool {
        self.0.fract() == 0.0
    }
    /// `None` for 0, which means "no limit" for `max_time`.
    pub fn limit(self) -> Option<Duration> {
        (self.0 > 0.0).then(|| self.duration())
    }
}

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    Default,
    Config { section: String, loc: Loc },
}

#[derive(Clone, Debug)]
pub struct Val<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Val<T> {
    fn default(value: T) -> Val<T> {
        Val { value, origin: Origin::Default }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryFrom {
    Failed,
    Start,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    Always,
    Once,
    OncePerBoot,
    /// Once per machine identity: a clone of an image runs it again.
    OncePerInstance,
    /// When its fingerprint (task file, settings, `[env]`, `inputs`)
    /// differs from the one recorded at its last OK.
    OnChange,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Always => "always",
            RunMode::Once => "once",
            RunMode::OncePerBoot => "once-per-boot",
            RunMode::OncePerInstance => "once-per-instance",
            RunMode::OnChange => "on-change",
        }
    }
}

/// The settings a task section may override, with their origins.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_time: Val<Secs>,
    pub max_tries: Val<u32>,
    pub sleep_time: Val<Secs>,
    pub retry_jitter: Val<Secs>,
    pub interpreter: Val<Option<Vec<String>>>,
    pub kill_grace: Val<Secs>,
    /// Growth of the backoff per try (the reference's 1.14).
    pub backoff_factor: Val<f64>,
    /// Exit code meaning "OK, reboot before the next task".
    pub reboot_now_exit: Val<Option<i32>>,
    /// Exit code meaning "OK, reboot when the chain ends".
    pub reboot_later_exit: Val<Option<i32>>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_time: Val::default(Secs(600.0)),
            max_tries: Val::default(5),
            sleep_time: Val::default(Secs(1.0)),
            retry_jitter: Val::default(Secs(30.0)),
            interpreter: Val::default(None),
            kill_grace: Val::default(Secs(10.0)),
            backoff_factor: Val::default(crate::chain::outcome::REFERENCE_FACTOR),
            reboot_now_exit: Val::default(None),
            reboot_later_exit: Val::default(None),
        }
    }
}

/// Every key `[runner]` understands.
/// Every key `[runner]` understands, its default and meaning: the one
/// source of the unknown-key check, the man page's CONFIGURATION section
/// and the README's table.
pub const RUNNER_KEY_DOCS: &[(&str, &str, &str)] = &[
    ("sleep_time", "1", "minimum seconds between retries"),
    ("retry_jitter", "30", "random extra seconds of a backoff"),
    (
        "backoff_factor",
        "1.14",
        "growth of the backoff per try: the n-th sleep is backoff_factor^n x U(sleep_time, sleep_time + retry_jitter)",
    ),
    ("max_tries", "5", "tries of the chain before giving up (1 or more)"),
    ("max_time", "600", "seconds a task may run; 0 = no limit"),
    ("halt_task", "halt.sh", "file in TASKDIR run to halt; empty: none"),
    ("task_hook", "-", "command run before and after each task with the stats JSON as its last argument"),
    ("pre_task_hook", "-", "the same, before each task only"),
    ("post_task_hook", "-", "the same, after each task only"),
    ("interpreter", "-", "command prefix for tasks, e.g. /bin/bash -e; empty: none"),
    ("include_dir", "-", "directory of further INI files read after this one, in name order"),
    ("task_dir", "-", "TASKDIR when none is given on the command line"),
    ("times", "forever", "iterations when -n is not given; 0 = forever"),
    ("retry_from", "failed", "failed: retry at the failed task; start: from the first task"),
    ("kill_grace", "10", "seconds between SIGTERM and SIGKILL"),
    ("max_sleep_time", "-", "cap on one backoff sleep"),
    ("state_dir", "-", "where lock, journal and logs live"),
    ("keep_logs", "20", "log folders kept, one per iteration; 0 = no task logs"),
    ("max_log_size", "16M", "cap of one task's log in one iteration, keeping the tail"),
    ("reboot_now_exit", "-", "exit code: the task succeeded, reboot before the next task (e.g. 35)"),
    ("reboot_later_exit", "-", "exit code: the task succeeded, reboot when the chain ends (e.g. 37)"),
    ("reboot_task", "reboot.sh", "file in TASKDIR run to reboot; empty: none (runner exits 4)"),
    ("max_reboots", "10", "reboots one run may ask for before it gives up"),
    ("deadline", "-", "seconds a whole run may last; then it gives up (exit 1)"),
    ("deadline_counts_reboots", "false", "whether time waiting for a reboot counts toward deadline"),
    ("metrics_file", "-", "Prometheus textfile rewritten after task ends and at the run's end"),
];

/// The names of [`RUNNER_KEY_DOCS`].
pub fn runner_keys() -> Vec<&'static str> {
    RUNNER_KEY_DOCS.iter().map(|(k, _, _)| *k).collect()
}

/// Hook commands, already split into words.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    pub task: Option<Vec<String>>,
    pub pre: Option<Vec<String>>,
    pub post: Option<Vec<String>>,
}

impl Origin {
    /// `file:line` of a value set in the config; empty for a default.
    pub fn at(&self, ini: &Ini) -> String {
        match self {
            Origin::Default => String::new(),
            Origin::Config { loc, .. } => ini.at(*loc),
        }
    }
}

impl Hooks {
    /// Whether any hook is configured.
    pub fn any(&self) -> bool {
        self.task.is_some() || self.pre.is_some() || self.post.is_some()
    }
}

/// Typed `[runner]` settings.
#[derive(Clone, Debug)]
pub struct Runner {
    pub limits: Limits,
    pub halt_task: String,
    pub hooks: Hooks,
    pub task_dir: Option<PathBuf>,
    pub times: Option<u64>,
    pub retry_from: RetryFrom,
    pub max_sleep_time: Option<Secs>,
    pub state_dir: Option<PathBuf>,
    pub keep_logs: u32,
    /// Cap of one task's log within one iteration, in bytes.
    pub max_log_size: u64,
    /// File in TASKDIR run to reboot; empty: none.
    pub reboot_task: String,
    pub max_reboots: u32,
    /// How long a whole run may last.
    pub deadline: Option<Secs>,
    pub deadline_counts_reboots: bool,
    /// Where the Prometheus textfile goes.
    pub metrics_file: Option<PathBuf>,
}

impl Default for Runner {
    fn default() -> Runner {
        Runner {
            limits: Limits::default(),
            halt_task: "halt.sh".to_string(),
            hooks: Hooks::default(),
            task_dir: None,
            times: None,
            retry_from: RetryFrom::Failed,
            max_sleep_time: None,
            state_dir: None,
            keep_logs: 20,
            max_log_size: 16 << 20,
            reboot_task: "reboot.sh".to_string(),
            max_reboots: 10,
            deadline: None,
            deadline_counts_reboots: false,
            metrics_file: None,
        }
    }
}

/// One declared input of a `run = on-change` task.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A file, a directory or a glob: as written, and resolved against the
    /// config file's directory.
    Path { written: String, path: PathBuf, glob: bool },
    /// `env:NAME`: a variable of the task's environment.
    Env(String),
    /// `cmd:COMMAND`: the standard output of `sh -c COMMAND`.
    Cmd(String),
}

impl Input {
    /// The input as the config writes it.
    pub fn written(&self) -> String {
        match self {
            Input::Path { written, .. } => written.clone(),
            Input::Env(name) => format!("env:{name}"),
            Input::Cmd(cmd) => format!("cmd:{cmd}"),
        }
    }
}

/// One task's resolved configuration.
#[derive(Clone, Debug)]
pub struct TaskConfig {
    pub limits: Limits,
    pub depends_on: Vec<String>,
    /// Where `depends_on` was set.
    pub depends_from: Origin,
    pub run: Val<RunMode>,
    /// `inputs` (only for `run = on-change`).
    pub inputs: Val<Vec<Input>>,
    /// The keys of the task's own sections as `-g` reads them (least
    /// specific first), for an `on-change` task's fingerprint; empty
    /// otherwise.
    pub own_keys: Vec<(String, String)>,
}

/// The whole validated configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub ini: Ini,
    /// Absolute path of the main config file, if one was given.
    pub path: Option<PathBuf>,
    pub runner: Runner,
    /// `[env]`, in file order.
    pub env: Vec<(String, String)>,
}

/// Reads the config file and the files of its `include_dir`.
/// No path means built-in defaults (an empty INI).
pub fn load_ini(path: Option<&Path>) -> std::result::Result<Ini, Diag> {
    let mut ini = Ini::default();
    let Some(path) = path else { return Ok(ini) };
    ini.merge_file(path)?;
    if let Some(entry) = ini.get("runner", "include_dir").cloned() {
        let dir = relative_to_file(path, &entry.value);
        let names = crate::settings::discovery::list_dir(&dir).map_err(|e| {
            Diag::new(ini.at(entry.loc), format!("include_dir '{}': cannot read {}: {e}", entry.value, dir.display()))
        })?;
        for name in names {
            let file = dir.join(&name);
            // Directories are skipped (as run-parts does); anything else
            // that is not a regular file is refused by merge_file.
            if !file.is_dir() {
                ini.merge_file(&file)?;
            }
        }
    }
    Ok(ini)
}

/// `[env]` as RawConfigParser's `items('env')` gives it: when the section
/// exists, the `[DEFAULT]` keys first, then `[env]`'s own, which win.
pub fn env_items(ini: &Ini) -> Vec<(String, String)> {
    let Some(env) = ini.section("env") else { return Vec::new() };
    let mut items: Vec<(String, String)> =
        ini.defaults.entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
    for e in &env.entries {
        match items.iter_mut().find(|(k, _)| *k == e.key) {
            Some(slot) => slot.1 = e.value.clone(),
            None => items.push((e.key.clone(), e.value.clone())),
        }
    }
    items
}

/// The include files `load_ini` read, for the safety rule.
pub fn include_files(ini: &Ini) -> &[PathBuf] {
    ini.files.get(1..).unwrap_or_default()
}

/// A path from a config value: relative ones resolve against the directory
/// of the file that holds the main config.
pub fn relative_to_file(config: &Path, value: &str) -> PathBuf {
    let v = Path::new(value);
    if v.is_absolute() {
        return v.to_path_buf();
    }
    config.parent().unwrap_or(Path::new(".")).join(v)
}

impl Config {
    /// Validates `[runner]` and `[env]`. Bad values are reported and replaced
    /// by their defaults, so that every problem shows at once.
    pub fn from_ini(ini: Ini, path: Option<PathBuf>, diags: &mut Diags) -> Config {
        let mut runner = Runner::default();
        if let Some(section) = ini.section("runner") {
            for e in &section.entries {
                if !RUNNER_KEY_DOCS.iter().any(|(k, _, _)| *k == e.key) {
                    diags.warn(
                        ini.at(e.loc),
                        format!(
                            "unknown key '{}' in [runner]; did you mean '{}'?",
                            e.key,
                            nearest(&e.key, &runner_keys())
                        ),
                    );
                }
            }
        }
        let mut v = Validator { ini: &ini, section: "runner", diags, own_only: false };
        v.limits(&mut runner.limits);
        // `halt_task =` (empty) means no halt task at all.
        if let Some(e) = v.entry("halt_task") {
            runner.halt_task = e.value.trim().to_string();
        }
        runner.hooks.task = v.command("task_hook").flatten();
        runner.hooks.pre = v.command("pre_task_hook").flatten();
        runner.hooks.post = v.command("post_task_hook").flatten();
        if let (Some(p), Some(e)) = (&path, v.entry("task_dir")) {
            runner.task_dir = Some(relative_to_file(p, e.value.trim()));
        }
        if let (Some(p), Some(e)) = (&path, v.entry("metrics_file"))
            && !e.value.trim().is_empty()
        {
            runner.metrics_file = Some(relative_to_file(p, e.value.trim()));
        }
        if let (Some(p), Some(e)) = (&path, v.entry("state_dir")) {
            runner.state_dir = Some(relative_to_file(p, e.value.trim()));
        }
        if let Some(n) = v.number("times", 0, u64::MAX) {
            runner.times = (n > 0).then_some(n);
        }
        if let Some(e) = v.entry("retry_from") {
            match e.value.trim() {
                "failed" => runner.retry_from = RetryFrom::Failed,
                "start" => runner.retry_from = RetryFrom::Start,
                _ => v.bad(e, "expected 'failed' or 'start'"),
            }
        }
        runner.max_sleep_time = v.secs("max_sleep_time").map(|s| s.value);
        if let Some(n) = v.number("keep_logs", 0, u32::MAX as u64) {
            runner.keep_logs = n as u32;
        }
        if let Some(e) = v.entry("max_log_size") {
            match parse_size(&e.value) {
                Some(n) if n >= crate::settings::config::MIN_LOG_SIZE => runner.max_log_size = n,
                _ => v.bad(e, "expected a size of at least 4096 bytes, e.g. 16M, 512K or 1048576"),
            }
        }
        if let Some(e) = v.entry("reboot_task") {
            runner.reboot_task = e.value.trim().to_string();
        }
        if let Some(n) = v.number("max_reboots", 0, u32::MAX as u64) {
            runner.max_reboots = n as u32;
        }
        runner.deadline = v.secs("deadline").map(|s| s.value).filter(|s| s.0 > 0.0);
        if let Some(e) = v.entry("deadline_counts_reboots") {
            match e.value.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => runner.deadline_counts_reboots = true,
                "false" | "no" | "off" | "0" => runner.deadline_counts_reboots = false,
                _ => v.bad(e, "expected true or false"),
            }
        }
        v.reboot_codes(&runner.limits);
        v.first_sleep(&runner.limits);
        let env = env_items(&ini);
        if let Some(section) = ini.section("env") {
            // Values never appear in messages (secrets live in [env]).
            for e in section.entries.iter().chain(&ini.defaults.entries) {
                if e.key.contains('\0') || e.value.contains('\0') || e.key.contains('=') {
                    diags.error(
                        ini.at(e.loc),
                        format!(
                            "[env] variable '{}' cannot be exported: its name or value holds a NUL byte or its name an '='",
                            e.key.replace('\0', "\\0")
                        ),
                    );
                }
            }
        }
        Config { ini, path, runner, env }
    }

    /// The effective configuration of one task, given the sections that name
    /// it (most specific first: file name, task name, the reference's
    /// mangled name).
    pub fn task_config(&self, sections: &[&Section], diags: &mut Diags) -> TaskConfig {
        let mut limits = self.runner.limits.clone();
        let mut depends_on = Vec::new();
        let mut depends_from = Origin::Default;
        let mut run = Val::default(RunMode::Always);
        let mut inputs: Val<Vec<Input>> = Val::default(Vec::new());
        // Least specific first, so the most specific section wins.
        for section in sections.iter().rev() {
            let mut v = Validator { ini: &self.ini, section: &section.name, diags, own_only: true };
            v.limits(&mut limits);
            if let Some(e) = v.entry("depends_on") {
                depends_on = e.value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
                depends_from = Origin::Config { section: section.name.clone(), loc: e.loc };
            }
            if let Some(e) = v.entry("run") {
                let mode = match e.value.trim() {
                    "always" => Some(RunMode::Always),
                    "once" => Some(RunMode::Once),
                    "once-per-boot" => Some(RunMode::OncePerBoot),
                    "once-per-instance" => Some(RunMode::OncePerInstance),
                    "on-change" => Some(RunMode::OnChange),
                    _ => None,
                };
                match mode {
                    Some(m) => run = v.val(e, m),
                    None => v.bad(e, "expected 'always', 'once', 'once-per-boot', 'once-per-instance' or 'on-change'"),
                }
            }
            if let Some(e) = v.entry("inputs") {
                let base = self.path.as_deref().unwrap_or(Path::new("runner.cfg"));
                match parse_inputs(&e.value, base) {
                    Ok(list) => inputs = v.val(e, list),
                    Err(why) => v.bad(e, &why),
                }
            }
        }
        if !sections.is_empty() {
            let section = sections.first().map_or("", |s| s.name.as_str());
            let mut v = Validator { ini: &self.ini, section, diags, own_only: true };
            if sections.iter().any(|s| s.get("reboot_now_exit").is_some() || s.get("reboot_later_exit").is_some()) {
                v.reboot_codes(&limits);
            }
            if sections
                .iter()
                .any(|s| ["backoff_factor", "sleep_time", "retry_jitter"].iter().any(|k| s.get(k).is_some()))
            {
                v.first_sleep(&limits);
            }
        }
        if let Origin::Config { section, loc } = &inputs.origin
            && run.value != RunMode::OnChange
        {
            diags.error(
                self.ini.at(*loc),
                format!(
                    "'inputs' in [{section}] applies only to run = on-change, and this task's run is '{}'",
                    run.value.as_str()
                ),
            );
        }
        // What `-g SECTION.KEY` answers for the task's sections: their own
        // keys over the `[DEFAULT]` fallbacks.
        let own_keys = if run.value == RunMode::OnChange {
            let defaults = self.ini.defaults.entries.iter();
            let own = sections.iter().rev().flat_map(|s| s.entries.iter());
            defaults.chain(own).map(|e| (e.key.clone(), e.value.clone())).collect()
        } else {
            Vec::new()
        };
        TaskConfig { limits, depends_on, depends_from, run, inputs, own_keys }
    }
}

/// `inputs = a.conf, ../shared/*.tmpl, env:NAME, cmd:COMMAND`: entries
/// split at commas; paths and globs resolve against the config file's
/// directory. The reason when an entry cannot be used.
pub fn parse_inputs(text: &str, config: &Path) -> std::result::Result<Vec<Input>, String> {
    let mut list = Vec::new();
    for (n, item) in text.split(',').map(str::trim).enumerate() {
        let n = n + 1;
        if item.is_empty() {
            return Err(format!("entry {n} is empty; entries are separated by commas"));
        }
        if item.contains('\0') {
            return Err(format!("entry {n} holds a NUL byte"));
        }
        let input = if let Some(name) = item.strip_prefix("env:") {
            let name = name.trim();
            if name.is_empty() || name.contains('=') || name.contains(char::is_whitespace) {
                return Err(format!("'{item}': expected env:NAME, a variable name without '=' or spaces"));
            }
            Input::Env(name.to_string())
        } else if let Some(cmd) = item.strip_prefix("cmd:") {
            let cmd = cmd.trim();
            if cmd.is_empty() {
                return Err(format!("'{item}': expected cmd:COMMAND, a command for sh -c"));
            }
            Input::Cmd(cmd.to_string())
        } else {
            let path = relative_to_file(config, item);
            let glob = item.contains(['*', '?', '[']);
            if glob && let Err(e) = glob::Pattern::new(&path.to_string_lossy()) {
                return Err(format!("'{item}': not a valid glob: {e}"));
            }
            Input::Path { written: item.to_string(), path, glob }
        };
        list.push(input);
    }
    Ok(list)
}

/// Reads typed values out of one section, reporting bad ones.
struct Validator<'a> {
    ini: &'a Ini,
    section: &'a str,
    diags: &'a mut Diags,
    /// Task sections take only their own keys, not `[DEFAULT]`'s, so that a
    /// `[DEFAULT]` fallback never overrides `[runner]`.
    own_only: bool,
}

impl<'a> Validator<'a> {
    fn entry(&self, key: &str) -> Option<&'a Entry> {
        if self.own_only { self.ini.section(self.section)?.get(key) } else { self.ini.get(self.section, key) }
    }

    fn bad(&mut self, e: &Entry, expected: &str) {
        self.diags.error(
            self.ini.at(e.loc),
            format!("bad value for '{}' in [{}]: '{}' ({expected})", e.key, self.section, e.value),
        );
    }

    fn val<T>(&self, e: &Entry, value: T) -> Val<T> {
        Val { value, origin: Origin::Config { section: self.section.to_string(), loc: e.loc } }
    }

    fn secs(&mut self, key: &str) -> Option<Val<Secs>> {
        let e = self.entry(key)?;
        match parse_secs(&e.value) {
            Some(s) => Some(self.val(e, s)),
            None => {
                self.bad(e, "expected a number of seconds, e.g. 10 or 0.5");
                None
            }
        }
    }

    fn number(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        let e = self.entry(key)?;
        match e.value.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.bad(e, &format!("expected a whole number from {min} to {max}"));
                None
            }
        }
    }

    /// A command split into words like a shell would; `Some(None)` when the
    /// key is set but empty.
    fn command(&mut self, key: &str) -> Option<Option<Vec<String>>> {
        let e = self.entry(key)?;
        if e.value.contains('\0') {
            self.diags.error(
                self.ini.at(e.loc),
                format!(
                    "bad value for '{}' in [{}]: it holds a NUL byte, which no program can be given",
                    e.key, self.section
                ),
            );
            return None;
        }
        match shell_words::split(&e.value) {
            Ok(words) if words.is_empty() => Some(None),
            Ok(words) => Some(Some(words)),
            Err(err) => {
                self.bad(e, &format!("cannot split into words: {err}"));
                None
            }
        }
    }

    /// The first backoff sleep (`backoff_factor` x the longest U) must be
    /// a number of seconds runner can sleep.
    fn first_sleep(&mut self, limits: &Limits) {
        let f = &limits.backoff_factor;
        let longest = f.value * (limits.sleep_time.value.0 + limits.retry_jitter.value.0);
        if let Origin::Config { loc, section } = &f.origin
            && !(longest.is_finite() && longest <= MAX_SECS)
        {
            let written = self.ini.get(section, "backoff_factor").map_or(String::new(), |e| e.value.clone());
            self.diags.error(
                self.ini.at(*loc),
                format!(
                    "bad value for 'backoff_factor' in [{section}]: '{written}' (the first sleep would be \
                     {longest:e} s, beyond the {MAX_SECS} s runner can sleep)"
                ),
            );
        }
    }

    /// `reboot_now_exit` and `reboot_later_exit` must differ.
    fn reboot_codes(&mut self, limits: &Limits) {
        let (now, later) = (&limits.reboot_now_exit, &limits.reboot_later_exit);
        if let (Some(a), Some(b)) = (now.value, later.value)
            && a == b
        {
            let at = match (&later.origin, &now.origin) {
                (Origin::Config { loc, .. }, _) | (_, Origin::Config { loc, .. }) => self.ini.at(*loc),
                _ => String::new(),
            };
            self.diags.error(
                at,
                format!("reboot_now_exit and reboot_later_exit are both {a} for [{}]; they must differ", self.section),
            );
        }
    }

    fn limits(&mut self, limits: &mut Limits) {
        if let Some(s) = self.secs("max_time") {
            limits.max_time = s;
        }
        if let Some(s) = self.secs("sleep_time") {
            limits.sleep_time = s;
        }
        if let Some(s) = self.secs("retry_jitter") {
            limits.retry_jitter = s;
        }
        if let Some(s) = self.secs("kill_grace") {
            limits.kill_grace = s;
        }
        if let Some(e) = self.entry("backoff_factor") {
            match parse_decimal(&e.value) {
                Some(f) if f >= 1.0 => limits.backoff_factor = self.val(e, f),
                _ => self.bad(e, "expected a plain decimal of at least 1, e.g. 2 or 1.14"),
            }
        }
        if let Some(e) = self.entry("max_tries") {
            match e.value.trim().parse::<u32>() {
                Ok(n) if n >= 1 => limits.max_tries = self.val(e, n),
                _ => self.bad(e, &format!("expected a whole number from 1 to {}", u32::MAX)),
            }
        }
        for (key, slot) in
            [("reboot_now_exit", &mut limits.reboot_now_exit), ("reboot_later_exit", &mut limits.reboot_later_exit)]
        {
            let Some(e) = self.entry(key) else { continue };
            match e.value.trim() {
                "" => *slot = self.val(e, None),
                t => match t.parse::<i32>() {
                    Ok(n) if (1..=255).contains(&n) && n != 2 && n != 3 => *slot = self.val(e, Some(n)),
                    _ => self.bad(e, "expected an exit code from 1 to 255 other than 2 and 3 (0, 2 and 3 already mean go on, halt and stop)"),
                },
            }
        }
        // An empty interpreter runs tasks directly, as the reference did; a
        // task section uses it to switch off the global one.
        if let Some(e) = self.entry("interpreter")
            && let Some(words) = self.command("interpreter")
        {
            limits.interpreter = self.val(e, words);
        }
    }
}

/// Seconds as written in the config: a finite, non-negative decimal number,
/// at most [`MAX_SECS`].
pub fn parse_secs(text: &str) -> Option<Secs> {
    let n = parse_decimal(text)?;
    (n <= MAX_SECS).then_some(Secs(n))
}

/// A plain, finite, non-negative decimal: no "inf", "nan", exponents or
/// signs.
pub fn parse_decimal(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let n: f64 = t.parse().ok()?;
    n.is_finite().then_some(n)
}

/// A size in bytes: a whole number with an optional binary suffix (`K`,
/// `M`, `G`, or `KiB`, `MiB`, `GiB`).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = t[..digits].parse().ok()?;
    let shift = match t[digits..].trim() {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// The known key closest to `key` by edit distance.
pub fn nearest<'k>(key: &str, known: &[&'k str]) -> &'k str {
    known.iter().copied().min_by_key(|k| strsim::levenshtein(key, k)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        let cfg = Path::new("/etc/runner/runner.cfg");
        let ok = parse_inputs(" a.conf , /abs/*.tmpl, env:HG_SHARE, cmd:uname -r ", cfg).expect("parses");
        assert_eq!(
            ok,
            [
                Input::Path { written: "a.conf".into(), path: "/etc/runner/a.conf".into(), glob: false },
                Input::Path { written: "/abs/*.tmpl".into(), path: "/abs/*.tmpl".into(), glob: true },
                Input::Env("HG_SHARE".into()),
                Input::Cmd("uname -r".into()),
            ]
        );
        for bad in ["", "a,", ",a", "env:", "env:A B", "env:A=1", "cmd:", "x[", "a\0b"] {
            assert!(parse_inputs(bad, cfg).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("0.3"), Some(Secs(0.3)));
        assert_eq!(parse_secs(" 10 "), Some(Secs(10.0)));
        for bad in ["", "-1", "five", "nan", "inf", "1e3", "1e999", "99999999999999999999", "1..2"] {
            assert_eq!(parse_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "1.5M", "-1", "1T", "99999999999999999999G", "M"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn nearest_key() {
        assert_eq!(nearest("max_try", &runner_keys()), "max_tries");
        assert_eq!(nearest("sleeptime", &runner_keys()), "sleep_time");
        assert_eq!(nearest("Max_Time", &runner_keys()), "max_time");
    }
}
