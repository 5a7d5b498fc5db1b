//! Parse the command line, call [`runner::run`], print its error, exit with
//! its code.

use std::io::Write;
use std::process::exit;

use clap::Parser;
use runner::error::code;
use runner::settings::cli::Cli;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            exit(if e.use_stderr() { code::USAGE } else { code::OK });
        }
    };
    let status = match runner::run(&cli) {
        Ok(status) => status,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "runner: error: {e}");
            e.code()
        }
    };
    runner::logging::finish();
    exit(status);
}
