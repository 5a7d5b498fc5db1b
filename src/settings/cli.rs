//! Command-line flags (clap) and the one [`Mode`] they select. clap enforces
//! which flags go together: one mode at most, and a flag that has no effect
//! in the chosen mode is a usage error (64) rather than silently ignored.
//! Only definitions: `settings` resolves them with the configuration.

use std::path::PathBuf;

use clap::{ArgAction, ArgGroup, Parser};

const EXAMPLES: &str = "\
Examples:
  runner -c /etc/runner.cfg /etc/runner.d      run the chain forever
  runner -c runner.cfg -n 1 example-tasks.d    run it once
  runner -c runner.cfg -n 3 -H tasks.d         three iterations, then the halt task
  runner -c runner.cfg                         TASKDIR from [runner] task_dir
  runner -c runner.cfg -g hg.remote            print one config value (for tasks)
  runner -c runner.cfg --check tasks.d         validate everything, run nothing
  runner -c runner.cfg --dry-run tasks.d       show the plan and where each setting came from
  runner -c runner.cfg --status tasks.d        what the chain is doing now or did last

Exit status: 0 done, 1 gave up after max_tries, 2 a task asked to halt,
3 a task asked to stop, 64 usage error, 70 internal error, 74 state
directory I/O error, 75 chain locked, 77 unsafe state directory (root),
78 configuration error, 128+N stopped by signal N.";

/// Run the executables in a directory one after another; retry, halt or
/// stop according to their exit codes.
#[derive(Parser, Debug)]
#[command(name = "runner", version, about, after_help = EXAMPLES, infer_long_args = true)]
#[command(group(ArgGroup::new("mode").args(["get", "check", "dry_run", "status", "forget", "list", "plot", "generate_assets", "watchdog"]).multiple(false)))]
#[command(group(ArgGroup::new("json_mode").args(["check", "dry_run", "status"]).multiple(false)))]
pub struct Cli {
    /// Task directory (default: [runner] task_dir; ignored with -g, as the
    /// reference did)
    #[arg(value_name = "TASKDIR", value_hint = clap::ValueHint::DirPath)]
    pub taskdir: Option<PathBuf>,

    /// INI configuration file
    #[arg(short = 'c', long = "config", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,

    /// Print one configuration value and exit (SECTION.KEY)
    #[arg(short = 'g', long = "get", value_name = "SECTION.KEY")]
    pub get: Option<String>,

    /// Iterations of the whole chain (0 or absent: forever, or [runner] times)
    #[arg(short = 'n', long = "times", value_name = "N", conflicts_with_all = ["get", "check", "status", "forget", "plot"])]
    pub times: Option<u64>,

    /// Run the halt task after the last of N successful iterations
    #[arg(short = 'H', long = "halt-after", conflicts_with_all = ["get", "check", "dry_run", "status", "forget", "plot"])]
    pub halt_after: bool,

    /// More messages (debug level)
    #[arg(short = 'v', long = "verbose", action = ArgAction::SetTrue, conflicts_with = "quiet")]
    pub verbose: bool,

    /// Fewer messages (warnings and errors only)
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,

    /// Also send runner's own messages to the local syslog
    #[arg(long = "syslog")]
    pub syslog: bool,

    /// Write one JSON object per line for every run, task, sleep and halt
    /// event to FILE (appended; - for stdout)
    #[arg(long = "events", value_name = "FILE", conflicts_with = "mode")]
    pub events: Option<PathBuf>,

    /// Where lock, journal and logs live (default: [runner] state_dir, else
    /// /var/lib/runner/CHAIN for root, ~/.local/state/runner/CHAIN otherwise)
    #[arg(long = "state-dir", value_name = "DIR", conflicts_with_all = ["get", "check"])]
    pub state_dir: Option<PathBuf>,

    /// Continue the last run if it did not finish (same run id, iteration,
    /// try and attempt keys); otherwise start a new run
    #[arg(long = "resume", conflicts_with_all = ["fresh", "mode"])]
    pub resume: bool,

    /// Start a new run even if the last one did not finish
    #[arg(long = "fresh", conflicts_with = "mode")]
    pub fresh: bool,

    /// Wait for the chain lock instead of exiting 75
    #[arg(long = "wait", conflicts_with_all = ["get", "check", "dry_run", "list", "plot"])]
    pub wait: bool,

    /// Show what this chain is doing now or did last, and exit with its
    /// exit code (with --wait: once the running chain ends)
    #[arg(long = "status")]
    pub status: bool,

    /// With --status --wait: give up after SECS seconds (exit 75). (Not
    /// --timeout: --time must stay the abbreviation of --times it was in
    /// the reference.)
    #[arg(long = "wait-timeout", value_name = "SECS", requires_all = ["status", "wait"])]
    pub timeout: Option<f64>,

    /// Print the planned task files, one per line, in run order, and exit
    #[arg(long = "list")]
    pub list: bool,

    /// Validate the configuration and task directory, report every problem,
    /// run nothing (exit 78 on any error)
    #[arg(long = "check")]
    pub check: bool,

    /// Print the plan (tasks in run order, effective settings and where they
    /// came from, skipped files), run nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// With --status or --dry-run: print JSON
    #[arg(long = "json", requires = "json_mode")]
    pub json: bool,

    /// Forget the run-once markers and on-change fingerprint of TASK (file
    /// name or name), and exit
    #[arg(long = "forget", value_name = "TASK")]
    pub forget: Option<String>,

    /// Rewrite FILE as Prometheus metrics (node_exporter's textfile
    /// collector) after task ends and at the run's end
    #[arg(long = "metrics", value_name = "FILE", conflicts_with = "mode", value_hint = clap::ValueHint::FilePath)]
    pub metrics: Option<PathBuf>,

    /// Draw a run (default: the last) as an SVG timeline into FILE (- for
    /// stdout), and exit
    #[arg(long = "plot", value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub plot: Option<PathBuf>,

    /// With --plot: the run id of a kept run to draw
    #[arg(long = "run", value_name = "ID", requires = "plot")]
    pub run: Option<String>,

    /// Run TASK (file name or name) the first time it comes up, whatever
    /// its run = says (repeatable)
    #[arg(long = "force", value_name = "TASK", action = ArgAction::Append,
          conflicts_with_all = ["get", "check", "status", "forget", "list", "plot"])]
    pub force: Vec<String>,

    /// Run as root even with files writable by others (loudly)
    #[arg(long = "allow-insecure", conflicts_with_all = ["get", "status", "plot"])]
    pub allow_insecure: bool,

    /// Kill the running job's group when runner dies (started by runner)
    #[arg(long = "watchdog", hide = true)]
    pub watchdog: bool,

    /// Write the man page and shell completions into DIR (for packaging)
    #[arg(long = "generate-assets", value_name = "DIR", hide = true)]
    pub generate_assets: Option<PathBuf>,

    /// Pass task output through untouched, without the [name] prefix
    #[arg(long = "raw-output", conflicts_with = "mode")]
    pub raw_output: bool,
}

/// What runner was asked to do: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Run the chain (the default).
    Run,
    /// `-g SECTION.KEY`: print one configuration value.
    Get(String),
    /// `--check`: validate everything, run nothing.
    Check,
    /// `--dry-run`: print the plan.
    DryRun { json: bool },
    /// `--status`: what the chain is doing now or did last.
    Status { json: bool },
    /// `--forget TASK`: drop a task's run-once markers.
    Forget(String),
    /// `--list`: the planned task files, one per line.
    List,
    /// `--plot FILE [--run ID]`: a run as an SVG timeline.
    Plot { file: PathBuf, run: Option<String> },
    /// `--generate-assets DIR` (packaging).
    GenerateAssets(PathBuf),
    /// `--watchdog` (started by runner itself).
    Watchdog,
}

impl Cli {
    /// The mode the flags select (clap has already refused conflicting
    /// ones).
    pub fn mode(&self) -> Mode {
        if self.watchdog {
            Mode::Watchdog
        } else if let Some(dir) = &self.generate_assets {
            Mode::GenerateAssets(dir.clone())
        } else if let Some(key) = &self.get {
            Mode::Get(key.clone())
        } else if self.check {
            Mode::Check
        } else if self.dry_run {
            Mode::DryRun { json: self.json }
        } else if self.status {
            Mode::Status { json: self.json }
        } else if let Some(task) = &self.forget {
            Mode::Forget(task.clone())
        } else if self.list {
            Mode::List
        } else if let Some(file) = &self.plot {
            Mode::Plot { file: file.clone(), run: self.run.clone() }
        } else {
            Mode::Run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Mode, clap::error::ErrorKind> {
        Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied()))
            .map(|c| c.mode())
            .map_err(|e| e.kind())
    }

    #[test]
    fn one_mode_and_only_flags_that_mean_something_in_it() {
        assert_eq!(parse(&["t"]), Ok(Mode::Run));
        assert_eq!(parse(&["-c", "f", "-g", "a.b"]), Ok(Mode::Get("a.b".into())));
        // The reference accepted (and ignored) TASKDIR with -g.
        assert_eq!(parse(&["-c", "f", "-g", "a.b", "t"]), Ok(Mode::Get("a.b".into())));
        assert_eq!(parse(&["--dry-run", "--json", "-n", "2", "t"]), Ok(Mode::DryRun { json: true }));
        assert_eq!(parse(&["--status", "--json", "--state-dir", "s", "t"]), Ok(Mode::Status { json: true }));
        for bad in [
            &["--check", "--status", "t"][..],
            &["--json", "t"],
            &["--status", "-n", "1", "t"],
            &["--check", "--wait", "t"],
            &["--dry-run", "--resume", "t"],
            &["-g", "a.b", "--events", "-"],
            &["--forget", "x", "--raw-output", "t"],
            &["--status", "-H", "t"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
