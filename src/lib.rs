//! runner: runs the executables of one directory as a chain of tasks and
//! decides from each exit code whether to go on, retry, halt or stop.
//!
//! [`run`] is the whole program: answer `-g`, or resolve the options, start
//! the signal thread and run the chain.

pub mod assets;
pub mod chain;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod hooks;
pub mod ini;
pub mod logging;
pub mod options;
pub mod outcome;
pub mod plan;
pub mod process;
pub mod report;
pub mod safety;
pub mod signals;
pub mod state;
pub mod status;
pub mod tasks;
mod unix;

use std::io::Write;

use cli::Cli;
use error::{Error, Result, code};

/// Runs runner as the command line asks; returns the exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => logging::Level::Warn,
        (_, true) => logging::Level::Debug,
        _ => logging::Level::Info,
    };
    logging::init(level, cli.syslog);
    if cli.watchdog {
        return Ok(process::watchdog::serve());
    }
    if let Some(dir) = &cli.generate_assets {
        assets::generate(dir).map_err(|e| Error::Internal(anyhow::anyhow!("{}: {e}", dir.display())))?;
        return Ok(code::OK);
    }
    if let Some(key) = &cli.get {
        return get(cli, key);
    }
    if cli.check {
        return report::check(cli);
    }
    let opts = options::resolve(cli)?;
    for w in &opts.warnings {
        logging::warn(w);
    }
    let state_dir = state::resolve_dir(
        cli.state_dir.as_deref().map(options::absolute).as_deref(),
        opts.config.runner.state_dir.as_deref(),
        &opts.task_dir,
    );
    if cli.status {
        return status::show(&state_dir, cli.json);
    }
    if cli.dry_run {
        return report::dry_run(cli, &opts, &state_dir);
    }
    let events = events::Events::open(cli.events.as_deref()).map_err(|e| {
        let target = cli.events.as_deref().unwrap_or(std::path::Path::new("-")).display().to_string();
        Error::Usage(format!("--events {target}: {e}"))
    })?;
    signals::install().map_err(|e| Error::Internal(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let has_run_once = cli.forget.is_some() || opts.tasks.iter().any(|p| p.config.run.value != config::RunMode::Always);
    let mut journal = state::Journal::open(&state_dir, &opts.task_dir, cli.wait, has_run_once)?;
    if let Some(task) = &cli.forget {
        return forget(&opts, &mut journal, task);
    }
    process::watchdog::start();
    if !unix::become_subreaper() {
        logging::debug("PR_SET_CHILD_SUBREAPER is not available: escaped daemons are left to the service manager");
    }
    chain::run(&opts, &events, &mut journal, cli.resume && !cli.fresh)
}

/// `--forget TASK`: drop the run-once markers of a task.
fn forget(opts: &options::Options, journal: &mut state::Journal, word: &str) -> Result<i32> {
    let file = opts
        .tasks
        .iter()
        .find(|p| p.task.file_str == word)
        .or_else(|| opts.tasks.iter().find(|p| p.task.name == word))
        .map(|p| p.task.file_str.clone())
        .unwrap_or_else(|| word.to_string());
    let had = journal
        .forget(&file)
        .map_err(|e| Error::State(format!("{}: cannot write state: {e}", journal.dir.path.display())))?;
    if had {
        logging::info(&format!("{file}: run-once marker forgotten; it runs again next time"));
    } else {
        logging::info(&format!("{file}: had no run-once marker"));
    }
    Ok(code::OK)
}

/// `-g SECTION.KEY`: the raw value and a newline; nothing when the section
/// or key is missing (exit 0 either way, as the reference).
fn get(cli: &Cli, key: &str) -> Result<i32> {
    let Some((section, key)) = key.split_once('.') else {
        return Err(Error::Usage(format!("-g takes SECTION.KEY, got '{key}'")));
    };
    let path = cli.config.as_deref().map(options::absolute);
    let ini = config::load_ini(path.as_deref()).map_err(|d| Error::config(d.to_string()))?;
    if let Some(entry) = ini.get(section, key) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", entry.value);
    }
    Ok(code::OK)
}
