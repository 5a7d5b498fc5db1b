//! runner: runs the executables of one directory as a chain of tasks and
//! decides from each exit code whether to go on, retry, halt or stop.
//!
//! The folders, from the bottom up (each uses only those before it):
//! - [`settings`]: flags and INI resolved into one `Settings` value;
//! - [`process`]: running one child: spawn, supervise, output, signals;
//! - [`state`]: the state directory — lock, journal, markers, logs;
//! - [`chain`]: the loop of iterations and tries, and what an exit means;
//! - [`modes`]: one function per thing runner can be asked to do.
//!
//! Beside them: [`error`] (exit codes), [`logging`] and [`journald`]
//! (runner's own lines), [`util`] (time formats, hex), [`assets`] (man page
//! and completions). [`run`] picks the mode; `main` prints its error and
//! exits with its code.

pub mod assets;
pub mod chain;
pub mod error;
pub mod journald;
pub mod logging;
pub mod modes;
pub mod process;
pub mod settings;
pub mod state;
pub mod util;

use error::Result;
use settings::cli::Cli;

/// Runs runner as the command line asks; returns the exit code.
pub fn run(cli: &Cli) -> Result<i32> {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => logging::Level::Warn,
        (_, true) => logging::Level::Debug,
        _ => logging::Level::Info,
    };
    logging::init(level, cli.syslog);
    modes::run(cli)
}
