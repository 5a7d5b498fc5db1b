//! One function per thing runner can be asked to do, picked by
//! [`Mode`](crate::settings::cli::Mode): run the chain, `-g`, `--check`,
//! `--dry-run`, `--status`, `--plot`, `--forget`, and the hidden packaging
//! and watchdog modes. Each reads what it needs and nothing more: `-g` reads
//! only the INI; `--status` and `--plot` only the state directory; only
//! [`run`] and `--forget` take the chain lock.

pub mod check;
pub mod plot;
pub mod status;

use std::io::Write;

use crate::chain;
use crate::chain::events::Events;
use crate::error::{Error, Result, code};
use crate::logging;
use crate::process::{self, os, signals};
use crate::settings::cli::{Cli, Mode};
use crate::settings::config::{self, RunMode};
use crate::settings::{self, Settings};
use crate::state::Journal;

/// Runs the mode the command line selects; the exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    match cli.mode() {
        Mode::Watchdog => Ok(process::watchdog::serve()),
        Mode::GenerateAssets(dir) => {
            crate::assets::generate(&dir).map_err(|e| Error::Internal(anyhow::anyhow!("{}: {e}", dir.display())))?;
            Ok(code::OK)
        }
        Mode::Get(key) => get(cli, &key),
        Mode::Check => check::check(cli),
        Mode::DryRun { json } => {
            let mut s = resolve(cli)?;
            s.force = forced(&s, &cli.force)?;
            check::dry_run(&s, json)
        }
        Mode::Status { json } => {
            // Only the state is read: no warnings about the task directory
            // (a missing halt task) on every status call.
            let s = settings::resolve(cli)?;
            let wait = cli.wait.then(|| cli.timeout.map(std::time::Duration::from_secs_f64));
            status::show(&s, json, wait)
        }
        Mode::List => {
            let s = resolve(cli)?;
            let mut out = std::io::stdout().lock();
            for p in s.tasks.iter() {
                let _ = out.write_all(p.task.file().as_encoded_bytes());
                let _ = out.write_all(b"\n");
            }
            Ok(code::OK)
        }
        Mode::Plot { file, run } => {
            // Only the state is read (as --status).
            let s = settings::resolve(cli)?;
            plot::plot(&s, &file, run.as_deref())
        }
        Mode::Forget(task) => {
            let s = resolve(cli)?;
            signals::install().map_err(|e| Error::Internal(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
            let mut journal = Journal::open(&s.state_dir, &s.task_dir, cli.wait, true)?;
            forget(&s, &mut journal, &task)
        }
        Mode::Run => run_chain(cli),
    }
}

/// The settings, with their warnings printed.
fn resolve(cli: &Cli) -> Result<Settings> {
    let s = settings::resolve(cli)?;
    for w in &s.warnings {
        logging::warn(w);
    }
    Ok(s)
}

/// Runs the chain: events, signals, the lock and journal, the watchdog,
/// then the loop.
fn run_chain(cli: &Cli) -> Result<i32> {
    let mut s = resolve(cli)?;
    s.force = forced(&s, &cli.force)?;
    let events = Events::open(cli.events.as_deref()).map_err(|e| {
        let target = cli.events.as_deref().unwrap_or(std::path::Path::new("-")).display().to_string();
        Error::Usage(format!("--events {target}: {e}"))
    })?;
    signals::install().map_err(|e| Error::Internal(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    // Lost fingerprints only make on-change tasks run again: not a reason
    // to refuse a damaged journal.
    let has_run_once = s.tasks.iter().any(|p| !matches!(p.config.run.value, RunMode::Always | RunMode::OnChange));
    let mut journal = Journal::open(&s.state_dir, &s.task_dir, cli.wait, has_run_once)?;
    process::watchdog::start();
    if !os::become_subreaper() {
        logging::debug("PR_SET_CHILD_SUBREAPER is not available: escaped daemons are left to the service manager");
    }
    chain::run(&s, &events, &mut journal, &mut process::System, cli.resume && !cli.fresh)
}

/// The task files `--force` names; a name that is no task is exit 64.
fn forced(s: &Settings, words: &[String]) -> Result<Vec<String>> {
    words
        .iter()
        .map(|w| {
            s.task_file(w).map(String::from).ok_or_else(|| {
                Error::Usage(format!("--force {w}: no such task in {} (see --list)", s.task_dir.display()))
            })
        })
        .collect()
}

/// `--forget TASK`: drop the run-once markers and fingerprint of a task.
fn forget(s: &Settings, journal: &mut Journal, word: &str) -> Result<i32> {
    let file = s.task_file(word).unwrap_or(word).to_string();
    let had = journal
        .forget(&file)
        .map_err(|e| Error::State(format!("{}: cannot write state: {e}", journal.dir.path.display())))?;
    if had {
        logging::info(&format!("{file}: run-once marker or fingerprint forgotten; it runs again next time"));
    } else {
        logging::info(&format!("{file}: had no run-once marker or fingerprint"));
    }
    Ok(code::OK)
}

/// `-g SECTION.KEY`: the raw value and a newline; nothing when the section
/// or key is missing (exit 0 either way, as the reference).
fn get(cli: &Cli, key: &str) -> Result<i32> {
    let Some((section, key)) = key.split_once('.') else {
        return Err(Error::Usage(format!("-g takes SECTION.KEY, got '{key}'")));
    };
    let path = cli.config.as_deref().map(settings::absolute);
    let ini = config::load_ini(path.as_deref()).map_err(|d| Error::config(d.to_string()))?;
    if let Some(entry) = ini.get(section, key) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", entry.value);
    }
    Ok(code::OK)
}
