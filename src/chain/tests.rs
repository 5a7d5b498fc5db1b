//! The loop against a scripted spawner: the task protocol, retries,
//! halting, resume and attempt keys, with no process started.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::events::Events;
use super::*;
use crate::process::{Exit, Finished, Job};
use crate::settings::cli::Cli;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Plays back exit codes per task file (0 once the script is used up) and
/// records what ran, with each task's attempt key.
#[derive(Default)]
struct Script {
    exits: HashMap<String, VecDeque<Exit>>,
    ran: Vec<(String, String)>,
}

impl Script {
    fn codes(mut self, file: &str, codes: &[i32]) -> Script {
        let exits = codes.iter().map(|&code| Exit::Exited { code, duration: Duration::ZERO }).collect();
        self.exits.insert(file.into(), exits);
        self
    }

    fn then(mut self, file: &str, exit: Exit) -> Script {
        self.exits.entry(file.into()).or_default().push_back(exit);
        self
    }

    fn files(&self) -> Vec<&str> {
        self.ran.iter().map(|(f, _)| f.as_str()).collect()
    }
}

impl crate::process::Spawner for Script {
    fn run(&mut self, job: &Job) -> Finished {
        let path = PathBuf::from(job.argv.last().cloned().unwrap_or_default());
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let key = job
            .env
            .iter()
            .find(|(k, _)| k == &OsString::from("RUNNER_ATTEMPT_KEY"))
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.ran.push((file.clone(), key));
        let exit = self.exits.get_mut(&file).and_then(VecDeque::pop_front);
        Finished::of(exit.unwrap_or(Exit::Exited { code: 0, duration: Duration::ZERO }))
    }
}

/// A task directory with `files` (never executed) and a config.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new(files: &[&str], config: &str) -> std::result::Result<Dir, Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir(tmp.path().join("t"))?;
        for f in files {
            let p = tmp.path().join("t").join(f);
            std::fs::write(&p, "#!/bin/sh\nexit 99\n")?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
        let cfg = format!("[runner]\nsleep_time = 0\nretry_jitter = 0\nkeep_logs = 0\n{config}");
        std::fs::write(tmp.path().join("c.cfg"), cfg)?;
        Ok(Dir { tmp })
    }

    /// Runs the chain once (`resume` as `--resume`) with `script`.
    fn run(&self, script: &mut Script, resume: bool) -> std::result::Result<i32, Box<dyn std::error::Error>> {
        let p = |s: &str| self.tmp.path().join(s).display().to_string();
        let cli = Cli::try_parse_from(["runner", "-c", &p("c.cfg"), "-n", "1", "--state-dir", &p("state"), &p("t")])?;
        let s = crate::settings::resolve(&cli).map_err(|e| e.to_string())?;
        let mut journal = Journal::open(&s.state_dir, &s.task_dir, false, false).map_err(|e| e.to_string())?;
        Ok(run(&s, &Events::default(), &mut journal, script, resume).map_err(|e| e.to_string())?)
    }
}

#[test]
fn the_task_protocol() -> TestResult {
    let d = Dir::new(&["a", "b", "halt.sh"], "")?;
    // exit 0 goes on; exit 2 halts: the halt task runs, runner exits 2.
    let mut s = Script::default().codes("b", &[2]);
    assert_eq!(d.run(&mut s, false)?, 2);
    assert_eq!(s.files(), ["a", "b", "halt.sh"]);
    // exit 3 stops without the halt task.
    let mut s = Script::default().codes("a", &[3]);
    assert_eq!(d.run(&mut s, false)?, 3);
    assert_eq!(s.files(), ["a"]);
    Ok(())
}

#[test]
fn retries_go_on_at_the_failed_task_and_give_up_at_max_tries() -> TestResult {
    let d = Dir::new(&["a", "b", "halt.sh"], "max_tries = 3\n")?;
    let mut s = Script::default().codes("b", &[1, 7]);
    assert_eq!(d.run(&mut s, false)?, 0);
    assert_eq!(s.files(), ["a", "b", "b", "b"]);
    // The key stays while b is retried.
    let keys: Vec<&str> = s.ran.iter().filter(|(f, _)| f == "b").map(|(_, k)| k.as_str()).collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]));
    let mut s = Script::default().codes("b", &[1, 1, 1]);
    assert_eq!(d.run(&mut s, false)?, 1);
    assert_eq!(s.files(), ["a", "b", "b", "b", "halt.sh"]);
    Ok(())
}

#[test]
fn retry_from_start_reruns_the_chain() -> TestResult {
    let d = Dir::new(&["a", "b"], "retry_from = start\n")?;
    let mut s = Script::default().codes("b", &[1]);
    assert_eq!(d.run(&mut s, false)?, 0);
    assert_eq!(s.files(), ["a", "b", "a", "b"]);
    // a succeeded twice in the iteration: its second key is a new one.
    assert_ne!(s.ran[0].1, s.ran[2].1);
    Ok(())
}

#[test]
fn a_cancelled_run_resumes_at_its_task_with_the_same_key() -> TestResult {
    let d = Dir::new(&["a", "b", "c"], "")?;
    let cancelled = Exit::Cancelled { by: 15, code: None, signal: Some(15), duration: Duration::ZERO };
    let mut first = Script::default().then("b", cancelled);
    assert_eq!(d.run(&mut first, false)?, 143);
    assert_eq!(first.files(), ["a", "b"]);
    let mut again = Script::default();
    assert_eq!(d.run(&mut again, true)?, 0);
    assert_eq!(again.files(), ["b", "c"]);
    assert_eq!(first.ran[1].1, again.ran[0].1, "the interrupted task keeps its attempt key");
    // The run finished: another --resume starts a new run.
    let mut third = Script::default();
    assert_eq!(d.run(&mut third, true)?, 0);
    assert_eq!(third.files(), ["a", "b", "c"]);
    assert_ne!(third.ran[0].1, first.ran[0].1);
    Ok(())
}

#[test]
fn a_halting_run_is_never_resumed() -> TestResult {
    let d = Dir::new(&["a", "b", "halt.sh"], "")?;
    let cancelled = Exit::Cancelled { by: 15, code: None, signal: Some(15), duration: Duration::ZERO };
    // b asks to halt; the halt task is cut short by a signal.
    let mut s = Script::default().codes("b", &[2]).then("halt.sh", cancelled);
    d.run(&mut s, false)?;
    let mut again = Script::default();
    assert_eq!(d.run(&mut again, true)?, 0);
    assert_eq!(again.files(), ["a", "b"], "a new run, not the halt again");
    Ok(())
}

#[test]
fn attempt_keys() {
    let f = std::ffi::OsStr::new("10-a");
    let k = attempt_key("r", 1, f, 0);
    assert_eq!(k.len(), 36);
    assert_eq!(k, attempt_key("r", 1, f, 0));
    assert_ne!(k, attempt_key("r", 1, f, 1));
    assert_ne!(k, attempt_key("r", 2, f, 0));
    assert_ne!(k, attempt_key("s", 1, f, 0));
    assert_ne!(k, attempt_key("r", 1, std::ffi::OsStr::new("10-b"), 0));
}
