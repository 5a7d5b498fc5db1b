//! Settings: the command line and the configuration resolved into one
//! [`Settings`] value — the task directory, the tasks in run order with
//! their effective settings, the halt task, the environment, the iteration
//! bound and the state directory. Collects every configuration problem
//! before failing with exit 78.
//!
//! - [`cli`]: the flags and the one [`cli::Mode`] they select;
//! - [`ini`]: the INI dialect (RawConfigParser's, on rust-ini);
//! - [`config`]: typed, validated values with their origins;
//! - [`discovery`]: the task directory's entries and task names;
//! - [`order`]: the dependency order;
//! - [`safety`]: what root refuses.
//!
//! Nothing here runs a task or writes state.

pub mod cli;
pub mod config;
pub mod discovery;
pub mod ini;
pub mod order;
pub mod safety;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use cli::Cli;
use config::{Config, Diag, Diags, TaskConfig};
use discovery::{Lookup, NameIndex, SkipReason, Skipped, Task};
use safety::Safety;

/// A task of the chain with its effective configuration.
#[derive(Clone, Debug)]
pub struct Planned {
    pub task: Task,
    pub config: std::rc::Rc<TaskConfig>,
}

/// Everything a run needs, resolved and validated.
#[derive(Debug)]
pub struct Settings {
    pub config: Config,
    pub task_dir: PathBuf,
    /// Tasks in run order (shared with the chain, not copied).
    pub tasks: std::rc::Rc<Vec<Planned>>,
    pub skipped: Vec<Skipped>,
    /// `None` when `[runner] halt_task` is empty.
    pub halt_task: Option<PathBuf>,
    /// `None` when `[runner] reboot_task` is empty.
    pub reboot_task: Option<PathBuf>,
    /// Iterations; `None` is forever.
    pub times: Option<u64>,
    pub halt_after: bool,
    pub raw_output: bool,
    pub allow_insecure: bool,
    /// Where the chain's lock, journal and logs live.
    pub state_dir: PathBuf,
    /// `[env]` and `RUNNER_CONFIG_CMD`, added to every task's environment.
    pub env: Vec<(OsString, OsString)>,
    /// Task files named by `--force`.
    pub force: Vec<String>,
    /// The Prometheus textfile (`--metrics`, else `[runner] metrics_file`).
    pub metrics_file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

impl Settings {
    /// Where relative `inputs` and `cmd:` inputs start: the config file's
    /// directory (the task directory without a config file).
    pub fn config_dir(&self) -> &Path {
        self.config.path.as_deref().and_then(Path::parent).unwrap_or(&self.task_dir)
    }

    /// The task file named by `word` (its file name or its name).
    pub fn task_file(&self, word: &str) -> Option<&str> {
        let tasks = self.tasks.iter();
        let found =
            tasks.clone().find(|p| p.task.file_str == word).or_else(|| tasks.clone().find(|p| p.task.name == word));
        found.map(|p| p.task.file_str.as_str())
    }
}

/// An absolute path for a command-line path (relative to the working
/// directory), without resolving symlinks.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads and validates everything and fails with every configuration
/// error at once (exit 78).
pub fn resolve(cli: &Cli) -> Result<Settings> {
    let mut diags = Diags::default();
    match inspect(cli, &mut diags, false) {
        Some(opts) if diags.errors.is_empty() => Ok(opts),
        _ => Err(diags.to_error()),
    }
}

/// Reads and validates everything, reporting every problem into `diags`.
/// `None` when it could not get as far as a task list. With `strict`
/// (`--check`), an interpreter that is not found is an error, not a
/// warning.
pub fn inspect(cli: &Cli, diags: &mut Diags, strict: bool) -> Option<Settings> {
    let config_path = cli.config.as_deref().map(absolute);
    let ini = match config::load_ini(config_path.as_deref()) {
        Ok(ini) => ini,
        Err(d) => {
            diags.errors.push(d);
            return None;
        }
    };
    let mut safety = Safety::new(cli.allow_insecure);
    if cli.allow_insecure && safety.enabled() {
        diags.warn("", "--allow-insecure: files writable by others will be run as root");
    }
    if let Some(p) = &config_path {
        safety.file(p, "config file", diags);
    }
    for f in config::include_files(&ini) {
        safety.file(f, "include file", diags);
    }
    let config = Config::from_ini(ini, config_path.clone(), diags);

    let task_dir = match (&cli.taskdir, &config.runner.task_dir) {
        (Some(d), _) => absolute(d),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            diags.error("", "missing TASKDIR: give it on the command line or as [runner] task_dir");
            return None;
        }
    };
    match std::fs::metadata(&task_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            diags.error(task_dir.display(), "TASKDIR is not a directory");
            return None;
        }
        Err(e) => {
            diags.error(task_dir.display(), format!("cannot read TASKDIR: {e}"));
            return None;
        }
    }
    // A chain is its canonical task directory: `tasks`, `tasks/`,
    // `./x/../tasks` and a symlink to it share one lock, journal and set
    // of run-once markers.
    let task_dir = std::fs::canonicalize(&task_dir).unwrap_or(task_dir);
    let (tasks, skipped) = plan_dir(&config, &task_dir, &mut safety, diags)?;

    let halt_task = (!config.runner.halt_task.is_empty()).then(|| task_dir.join(&config.runner.halt_task));
    match &halt_task {
        Some(h) if h.exists() => safety.file(h, "halt task", diags),
        Some(h) => diags.warn(h.display(), "halt task does not exist; halting will fail"),
        None => {}
    }
    let reboot_task = (!config.runner.reboot_task.is_empty()).then(|| task_dir.join(&config.runner.reboot_task));
    if let Some(r) = reboot_task.as_ref().filter(|r| r.exists()) {
        safety.file(r, "reboot task", diags);
    }
    check_programs(&config, &tasks, &mut safety, diags, strict);
    let times = cli.times.or(config.runner.times).filter(|&n| n > 0);
    if cli.halt_after && times.is_none() {
        diags.warn("", "-H/--halt-after has no effect without -n or [runner] times");
    }
    let env = environment(&config, diags);
    let state_dir = resolve_state_dir(
        cli.state_dir.as_deref().map(absolute).as_deref(),
        config.runner.state_dir.as_deref(),
        &task_dir,
    );
    let warnings = diags.warnings.iter().map(Diag::to_string).collect();
    let metrics_file = cli.metrics.as_deref().map(absolute).or_else(|| config.runner.metrics_file.clone());
    Some(Settings {
        config,
        task_dir,
        tasks: std::rc::Rc::new(tasks),
        skipped,
        halt_task,
        reboot_task,
        times,
        halt_after: cli.halt_after,
        raw_output: cli.raw_output,
        allow_insecure: cli.allow_insecure,
        state_dir,
        env,
        force: Vec::new(),
        metrics_file,
        warnings,
    })
}

/// Lists the task directory and plans the chain: discovery, sections,
/// effective settings, the safety rule, the order. `None` when the
/// directory cannot be read.
fn plan_dir(
    config: &Config,
    task_dir: &Path,
    safety: &mut Safety,
    diags: &mut Diags,
) -> Option<(Vec<Planned>, Vec<Skipped>)> {
    let (candidates, mut skipped) =
        match discovery::discover(task_dir, &config.runner.halt_task, &config.runner.reboot_task) {
            Ok(found) => found,
            Err(e) => {
                diags.error(task_dir.display(), format!("cannot read TASKDIR: {e}"));
                return None;
            }
        };
    safety.dir(task_dir, "task directory", diags);
    // Sections are matched against every candidate, so that a section for a
    // non-executable file can still give it an interpreter.
    // Without task sections (only [runner], [env], [DEFAULT] or none), no
    // name index is needed: a chain of 10,000 tasks plans in less memory.
    let sections = if config.ini.sections.iter().all(|s| matches!(s.name.as_str(), "runner" | "env")) {
        vec![Vec::new(); candidates.len()]
    } else {
        NameIndex::new(&candidates).sections(&config.ini, &candidates, diags)
    };
    let mut planned = Vec::new();
    // Tasks without a section of their own share one configuration.
    let shared = std::rc::Rc::new(config.task_config(&[], diags));
    for (task, secs) in candidates.into_iter().zip(sections) {
        let tc = if secs.is_empty() {
            std::rc::Rc::clone(&shared)
        } else {
            std::rc::Rc::new(config.task_config(&secs, diags))
        };
        if !task.executable && tc.limits.interpreter.value.is_none() {
            diags.warn(task.path(task_dir).display(), "not executable and no interpreter applies; skipped");
            skipped.push((task.file().to_os_string(), SkipReason::NotExecutable));
            continue;
        }
        safety.file(&task.path(task_dir), "task", diags);
        planned.push(Planned { task, config: tc });
    }
    skipped.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let order = order_tasks(&config.ini, &planned, diags);
    if order.iter().enumerate().all(|(i, &j)| i == j) {
        return Some((planned, skipped));
    }
    // Each task moved into its place in the order (no copy of a task).
    let mut slots: Vec<Option<Planned>> = planned.into_iter().map(Some).collect();
    Some((order.into_iter().filter_map(|i| slots[i].take()).collect(), skipped))
}

/// Lists the task directory again (at the start of every iteration, as
/// the reference did) with the configuration already read. The
/// configuration errors it finds, if any, each one line.
pub fn replan(opts: &Settings) -> std::result::Result<Vec<Planned>, Vec<String>> {
    let mut diags = Diags::default();
    let mut safety = Safety::new(opts.allow_insecure);
    let planned = plan_dir(&opts.config, &opts.task_dir, &mut safety, &mut diags);
    for w in &diags.warnings {
        crate::logging::debug(&w.to_string());
    }
    match planned {
        Some((tasks, _)) if diags.errors.is_empty() => Ok(tasks),
        _ => Err(diags.errors.iter().map(Diag::to_string).collect()),
    }
}

/// Interpreters and hook programs: found on disk (or in PATH), and safe
/// (the program runner will execute, followed to its real file).
fn check_programs(config: &Config, tasks: &[Planned], safety: &mut Safety, diags: &mut Diags, strict: bool) {
    // Each distinct interpreter once, named where it was set.
    let mut interpreters: Vec<(&[String], String)> = Vec::new();
    let all =
        std::iter::once(&config.runner.limits.interpreter).chain(tasks.iter().map(|p| &p.config.limits.interpreter));
    for val in all {
        if let Some(i) = &val.value
            && !interpreters.iter().any(|(w, _)| *w == i.as_slice())
        {
            interpreters.push((i, val.origin.at(&config.ini)));
        }
    }
    for (words, at) in interpreters {
        match find_program(&words[0]) {
            Some(path) => safety.file(&path, "interpreter", diags),
            None => {
                let msg = format!("interpreter '{}' not found", words[0]);
                if strict { diags.error(at, msg) } else { diags.warn(at, msg) }
            }
        }
    }
    let hooks = &config.runner.hooks;
    for (key, words) in [("task_hook", &hooks.task), ("pre_task_hook", &hooks.pre), ("post_task_hook", &hooks.post)] {
        let Some(words) = words else { continue };
        match find_program(&words[0]) {
            None => diags.warn("", format!("{key} program '{}' not found", words[0])),
            Some(path) => safety.file(&path, key, diags),
        }
    }
}

/// The program a command word names: a path as is, a bare name through
/// PATH (the `which` crate: an executable regular file, as a shell finds
/// it).
pub fn find_program(word: &str) -> Option<PathBuf> {
    which::which(word).ok()
}

/// Resolves `depends_on` words to tasks and plans the order. Unknown or
/// ambiguous dependencies are reported and left out, so that a cycle among
/// the others is still found; on a cycle, the order falls back to name order
/// so that checking can go on.
fn order_tasks(ini: &crate::settings::ini::Ini, planned: &[Planned], diags: &mut Diags) -> Vec<usize> {
    if planned.iter().all(|p| p.config.depends_on.is_empty()) {
        return (0..planned.len()).collect();
    }
    let tasks: Vec<&Task> = planned.iter().map(|p| &p.task).collect();
    let index = NameIndex::new(tasks.iter().copied());
    let mut deps = vec![Vec::new(); planned.len()];
    for (i, p) in planned.iter().enumerate() {
        let at = p.config.depends_from.at(ini);
        for word in &p.config.depends_on {
            match index.lookup(word) {
                Lookup::One(j) if j == i => {
                    diags.warn(&at, format!("{} depends on itself; ignored", p.task.file_str));
                }
                Lookup::One(j) => deps[i].push(j),
                Lookup::Shared(ids) => {
                    diags.error(
                        &at,
                        format!(
                            "{} depends on '{word}', which is ambiguous: it names {}; use the file name",
                            p.task.file_str,
                            index.files(|i| tasks[i].file_str.as_str(), &ids)
                        ),
                    );
                }
                Lookup::None => {
                    diags.error(&at, format!("{} depends on '{word}', which is not a task", p.task.file_str));
                }
            }
        }
    }
    match order::order(&deps) {
        Ok(order) => order,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| tasks[i].file_str.as_str()).collect();
            let mut shown = names.join(" -> ");
            if let Some(first) = names.first() {
                shown.push_str(&format!(" -> {first}"));
            }
            let at = cycle.first().map(|&i| planned[i].config.depends_from.at(ini)).unwrap_or_default();
            diags.error(at, format!("dependency cycle: {shown}"));
            (0..planned.len()).collect()
        }
    }
}

/// `[env]` plus `RUNNER_CONFIG_CMD`.
fn environment(config: &Config, diags: &mut Diags) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> =
        config.env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("runner"));
    let has_space = |p: &Path| p.as_os_str().as_bytes().iter().any(u8::is_ascii_whitespace);
    let spaced = has_space(&exe) || config.path.as_deref().is_some_and(has_space);
    let mut cmd = exe.into_os_string();
    if let Some(path) = &config.path {
        cmd.push(" -c ");
        cmd.push(path);
    }
    if spaced {
        diags.warn(
            "",
            format!(
                "RUNNER_CONFIG_CMD ({}) has a path with white space; tasks must not use it unquoted",
                cmd.to_string_lossy()
            ),
        );
    }
    env.push(("RUNNER_CONFIG_CMD".into(), cmd));
    env
}

/// Where the state of the chain in `task_dir` lives: `--state-dir`, else
/// `[runner] state_dir`, else `/var/lib/runner/<chain>` for root and
/// `$XDG_STATE_HOME/runner/<chain>` (`~/.local/state/runner/<chain>`)
/// otherwise. `<chain>` is the task directory's name and a short hash of
/// its canonical path.
pub fn resolve_state_dir(flag: Option<&Path>, configured: Option<&Path>, task_dir: &Path) -> PathBuf {
    if let Some(p) = flag.or(configured) {
        return p.to_path_buf();
    }
    let chain = chain_name(task_dir);
    if rustix::process::geteuid().is_root() {
        return Path::new("/var/lib/runner").join(chain);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("runner").join(chain)
}

/// `<dir name>-<8 hex of sha256(path)>`.
pub fn chain_name(task_dir: &Path) -> String {
    use sha2::Digest;
    let name = task_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
    let hash = sha2::Sha256::digest(task_dir.as_os_str().as_bytes());
    format!("{name}-{}", crate::util::hex(&hash[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_differ_by_path() {
        let a = chain_name(Path::new("/etc/runner.d"));
        let b = chain_name(Path::new("/srv/runner.d"));
        assert!(a.starts_with("runner.d-") && a.len() == "runner.d-".len() + 8);
        assert_ne!(a, b);
    }
}
