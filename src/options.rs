//! Resolves the command line and the configuration into everything a run
//! needs: the task directory, the tasks in run order with their effective
//! settings, the halt task, the environment and the iteration bound.
//! Collects every configuration problem before failing with exit 78.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cli::Cli;
use crate::config::{self, Config, Diags, TaskConfig};
use crate::error::{Error, Result};
use crate::plan;
use crate::tasks::{self, Lookup, NameIndex, SkipReason, Skipped, Task};

/// A task of the chain with its effective configuration.
#[derive(Clone, Debug)]
pub struct Planned {
    pub task: Task,
    pub config: TaskConfig,
}

/// Everything a run needs, resolved and validated.
#[derive(Debug)]
pub struct Options {
    pub config: Config,
    pub task_dir: PathBuf,
    /// Tasks in run order.
    pub tasks: Vec<Planned>,
    pub skipped: Vec<Skipped>,
    pub halt_task: PathBuf,
    /// Iterations; `None` is forever.
    pub times: Option<u64>,
    pub halt_after: bool,
    pub raw_output: bool,
    /// `[env]` and `RUNNER_CONFIG_CMD`, added to every task's environment.
    pub env: Vec<(OsString, OsString)>,
    pub warnings: Vec<String>,
}

/// An absolute path for a command-line path (relative to the working
/// directory), without resolving symlinks.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads and validates everything; every problem at once.
pub fn resolve(cli: &Cli) -> Result<Options> {
    let config_path = cli.config.as_deref().map(absolute);
    let ini = config::load_ini(config_path.as_deref())?;
    let mut diags = Diags::default();
    let config = Config::from_ini(ini, config_path.clone(), &mut diags);

    let task_dir = match (&cli.taskdir, &config.runner.task_dir) {
        (Some(d), _) => absolute(d),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            diags.errors.push("missing TASKDIR: give it on the command line or as [runner] task_dir".into());
            return Err(Error::Config(diags.errors));
        }
    };
    match std::fs::metadata(&task_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => diags.errors.push(format!("{}: TASKDIR is not a directory", task_dir.display())),
        Err(e) => diags.errors.push(format!("{}: cannot read TASKDIR: {e}", task_dir.display())),
    }
    if !diags.errors.is_empty() {
        return Err(Error::Config(diags.errors));
    }
    let (candidates, mut skipped) = tasks::discover(&task_dir, &config.runner.halt_task)
        .map_err(|e| Error::config(format!("{}: cannot read TASKDIR: {e}", task_dir.display())))?;

    // Sections are matched against every candidate, so that a section for a
    // non-executable file can still give it an interpreter.
    let index = NameIndex::new(&candidates);
    let sections = index.sections(&config.ini, &candidates, &mut diags);
    let mut planned = Vec::new();
    for (task, secs) in candidates.into_iter().zip(sections) {
        let tc = config.task_config(&secs, &mut diags);
        if !task.executable && tc.limits.interpreter.value.is_none() {
            diags.warnings.push(format!("{}: not executable and no interpreter applies; skipped", task.path.display()));
            skipped.push((task.file, SkipReason::NotExecutable));
            continue;
        }
        planned.push(Planned { task, config: tc });
    }
    skipped.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

    let order = order_tasks(&planned, &mut diags);
    let tasks: Vec<Planned> = order.into_iter().map(|i| planned[i].clone()).collect();

    let halt_task = task_dir.join(&config.runner.halt_task);
    if !halt_task.exists() {
        diags.warnings.push(format!("{}: halt task does not exist; halting will fail", halt_task.display()));
    }
    let times = cli.times.or(config.runner.times).filter(|&n| n > 0);
    if cli.halt_after && times.is_none() {
        diags.warnings.push("-H/--halt-after has no effect without -n or [runner] times".into());
    }
    let env = environment(&config, &mut diags);
    let warnings = diags.into_result()?;
    Ok(Options {
        config,
        task_dir,
        tasks,
        skipped,
        halt_task,
        times,
        halt_after: cli.halt_after,
        raw_output: cli.raw_output,
        env,
        warnings,
    })
}

/// Resolves `depends_on` words to tasks and plans the order. On a problem,
/// reports it and falls back to name order so that checking can go on.
fn order_tasks(planned: &[Planned], diags: &mut Diags) -> Vec<usize> {
    let tasks: Vec<Task> = planned.iter().map(|p| p.task.clone()).collect();
    let index = NameIndex::new(&tasks);
    let mut deps = vec![Vec::new(); planned.len()];
    let mut ok = true;
    for (i, p) in planned.iter().enumerate() {
        let at = p.config.depends_loc.clone().unwrap_or_default();
        for word in &p.config.depends_on {
            match index.lookup(word) {
                Lookup::One(j) if j == i => {
                    diags.warnings.push(format!("{at}: {} depends on itself; ignored", p.task.file_str));
                }
                Lookup::One(j) => deps[i].push(j),
                Lookup::Shared(ids) => {
                    ok = false;
                    diags.errors.push(format!(
                        "{at}: {} depends on '{word}', which is ambiguous: it names {}; use the file name",
                        p.task.file_str,
                        index.files(&tasks, &ids)
                    ));
                }
                Lookup::None => {
                    ok = false;
                    diags.errors.push(format!("{at}: {} depends on '{word}', which is not a task", p.task.file_str));
                }
            }
        }
    }
    if !ok {
        return (0..planned.len()).collect();
    }
    match plan::order(&deps) {
        Ok(order) => order,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| tasks[i].file_str.as_str()).collect();
            let mut shown = names.join(" -> ");
            if let Some(first) = names.first() {
                shown.push_str(&format!(" -> {first}"));
            }
            let at = cycle.first().and_then(|&i| planned[i].config.depends_loc.clone()).unwrap_or_default();
            diags.errors.push(format!("{at}: dependency cycle: {shown}"));
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
        diags.warnings.push(format!(
            "RUNNER_CONFIG_CMD ({}) has a path with white space; tasks must not use it unquoted",
            cmd.to_string_lossy()
        ));
    }
    env.push(("RUNNER_CONFIG_CMD".into(), cmd));
    env
}
