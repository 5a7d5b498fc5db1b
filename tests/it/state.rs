//! The state directory: layout and modes, lock, journal, resume, run-once,
//! task logs, --status.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
}

fn journal(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("state.json")).expect("loads")
}

fn log_dirs(state: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(state.join("logs"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn layout_and_modes() {
    let ran = Test::new().task("10-a.sh", "echo out line\necho err line >&2\necho \"log=$RUNNER_LOG_FILE\"").status(0);
    let state = ran.path().join("state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("state.json")), 0o600);
    assert_eq!(mode(&state.join("lock")), 0o600);
    assert_eq!(mode(&state.join("logs")), 0o700);
    let runs = log_dirs(&state);
    assert_eq!(runs.len(), 1);
    assert_eq!(mode(&runs[0]), 0o700);
    let log = runs[0].join("10-a.sh.log");
    assert_eq!(mode(&log), 0o600);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().any(|l| l.ends_with(" [out] out line") && l.starts_with("20")), "{text}");
    assert!(lines.iter().any(|l| l.ends_with(" [err] err line")), "{text}");
    assert!(lines[0].contains("[runner] 10-a.sh: try 1 of 5"), "{text}");
    ran.stdout_has(&format!("[a] log={}", log.display()));
    let j = journal(&state);
    assert_eq!(j["run"]["status"], "finished");
    assert_eq!(j["run"]["exit_code"], 0);
    assert_eq!(j["run"]["tasks"]["10-a.sh"][0], "OK");
}

#[test]
fn post_hook_names_the_log_file() {
    let ran = Test::new()
        .config("[runner]\npost_task_hook = /bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE\"' hook\n")
        .task("a", "echo hi")
        .status(0);
    let stats: Value = serde_json::from_str(&ran.trace()[0]).expect("json");
    let log = stats["log_file"].as_str().expect("log_file");
    assert!(log.ends_with("/a.log"), "{log}");
    assert!(std::fs::read_to_string(log).expect("exists").contains("[out] hi"));
}

#[test]
fn hook_output_goes_to_the_task_log() {
    let ran = Test::new().config("[runner]\npre_task_hook = /bin/echo hook-said\n").task("a", "exit 0").status(0);
    let runs = log_dirs(&ran.path().join("state"));
    let text = std::fs::read_to_string(runs[0].join("a.log")).expect("log");
    assert!(text.contains("[out] hook-said "), "{text}");
}

#[test]
fn default_state_dir() {
    let t = Test::new().config_exact("[runner]\nsleep_time = 0\n").traced("a", 0);
    let task_dir = t.tasks_dir();
    let ran = t.raw_args(["-c", "runner.cfg", "-n", "1", "tasks.d"]).status(0);
    let root = is_root();
    let base = if root { PathBuf::from("/var/lib/runner") } else { ran.path().join("xdg-state/runner") };
    let found: Vec<PathBuf> = std::fs::read_dir(&base)
        .expect("state base")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("state.json").exists())
        .filter(|p| {
            journal(p)["task_dir"].as_str()
                == Some(&std::fs::canonicalize(&task_dir).unwrap_or(task_dir.clone()).to_string_lossy())
                || journal(p)["task_dir"].as_str() == Some(&task_dir.to_string_lossy())
        })
        .collect();
    assert_eq!(found.len(), 1, "{base:?}");
    let name = found[0].file_name().unwrap_or_default().to_string_lossy().into_owned();
    assert!(name.starts_with("tasks.d-") && name.len() == "tasks.d-".len() + 8, "{name}");
    assert_eq!(mode(&found[0]), 0o700);
    if root {
        let _ = std::fs::remove_dir_all(&found[0]);
    }
}

#[test]
fn state_dir_flag_wins() {
    let t = Test::new().traced("a", 0);
    let dir = t.path().join("elsewhere");
    let ran = t.args(["--state-dir".into(), dir.clone().into_os_string()]).status(0);
    assert!(dir.join("state.json").exists());
    assert!(!ran.path().join("state/state.json").exists());
}

#[test]
fn second_runner_gets_75_naming_the_holder() {
    let t = Test::new().task("a", "echo started > \"$TRACE.started\"\nsleep 30");
    let mut first = t.spawn();
    assert!(eventually(20, || t.path().join("trace.started").exists()));
    let second = t.run_more();
    assert_eq!(second.code(), 75, "{}", second.describe());
    second.stderr_has(&format!("held by pid {}", first.pid()));
    second.stderr_has("since 20");
    first.signal("TERM");
    assert_eq!(first.wait(20), 143);
}

#[test]
fn wait_flag_waits_for_the_lock() {
    let t = Test::new().task(
        "a",
        "echo \"$$ start\" >> \"$TRACE\"\n[ -e \"$TRACE.release\" ] || sleep 1\necho \"$$ end\" >> \"$TRACE\"",
    );
    let mut first = t.spawn();
    assert!(eventually(20, || t.path().join("trace").exists()));
    std::fs::write(t.path().join("trace.release"), "").expect("release");
    let second = t.run_more_with(&["--wait"]);
    assert_eq!(second.code(), 0, "{}", second.describe());
    assert_eq!(first.wait(20), 0);
    let trace = std::fs::read_to_string(t.path().join("trace")).unwrap_or_default();
    let kinds: Vec<&str> = trace.lines().map(|l| l.split(' ').nth(1).unwrap_or("")).collect();
    assert_eq!(kinds, ["start", "end", "start", "end"], "runs did not overlap\n{trace}");
}

#[test]
fn killed_holder_does_not_block() {
    let t = Test::new().task("a", "[ -e \"$TRACE.go\" ] && exit 0\necho $$ > \"$TRACE.pid\"\nexec sleep 30");
    let mut first = t.spawn();
    assert!(eventually(20, || std::fs::read_to_string(t.path().join("trace.pid")).is_ok_and(|s| s.ends_with('\n'))));
    first.signal("KILL");
    first.wait(20);
    let task: i32 = std::fs::read_to_string(t.path().join("trace.pid")).unwrap_or_default().trim().parse().unwrap_or(0);
    let _ = std::process::Command::new("kill").arg(task.to_string()).status();
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let again = t.run_more();
    assert_eq!(again.code(), 0, "{}", again.describe());
}

#[test]
fn resume_after_kill_9_continues_at_the_interrupted_task() {
    let t = Test::new()
        .task("1-first", "echo \"first $RUNNER_RUN_ID $RUNNER_ATTEMPT_KEY\" >> \"$TRACE\"")
        .task(
            "2-second",
            "echo \"second $RUNNER_RUN_ID $RUNNER_ATTEMPT_KEY\" >> \"$TRACE\"\n[ -e \"$TRACE.go\" ] && exit 0\necho $$ > \"$TRACE.pid\"\nexec sleep 30",
        )
        .task("3-third", "echo \"third $RUNNER_RUN_ID $RUNNER_ATTEMPT_KEY\" >> \"$TRACE\"");
    let mut first = t.spawn();
    assert!(eventually(20, || std::fs::read_to_string(t.path().join("trace.pid")).is_ok_and(|s| s.ends_with('\n'))));
    first.signal("KILL");
    first.wait(20);
    let task = std::fs::read_to_string(t.path().join("trace.pid")).unwrap_or_default();
    let _ = std::process::Command::new("kill").arg(task.trim()).status();
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let resumed = t.run_more_with(&["--resume"]);
    assert_eq!(resumed.code(), 0, "{}", resumed.describe());
    resumed.stderr_has("resuming run");
    let trace = std::fs::read_to_string(t.path().join("trace")).unwrap_or_default();
    let lines: Vec<Vec<&str>> = trace.lines().map(|l| l.split(' ').collect()).collect();
    let names: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    assert_eq!(names, ["first", "second", "second", "third"], "{trace}");
    assert_eq!(lines[1][1], lines[2][1], "same run id");
    assert_eq!(lines[1][2], lines[2][2], "same attempt key");
    assert_eq!(lines[0][1], lines[3][1]);
}

#[test]
fn resume_after_sigterm_and_fresh() {
    let t = Test::new().traced("1-first", 0).task(
        "2-second",
        &format!("{TRACE}\n[ -e \"$TRACE.go\" ] && exit 0\necho waiting > \"$TRACE.started\"\nexec sleep 30"),
    );
    let mut first = t.spawn();
    assert!(eventually(20, || t.path().join("trace.started").exists()));
    first.signal("TERM");
    assert_eq!(first.wait(20), 143);
    let j = journal(&t.path().join("state"));
    assert_eq!(j["run"]["status"], "cancelled");
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let resumed = t.run_more_with(&["--resume"]);
    assert_eq!(resumed.code(), 0, "{}", resumed.describe());
    assert_eq!(resumed.trace(), ["1-first", "2-second", "2-second"]);
    // The run finished: --resume now starts a new run.
    let again = t.run_more_with(&["--resume"]);
    again.stderr_has("nothing to resume");
    assert_eq!(again.trace(), ["1-first", "2-second", "2-second", "1-first", "2-second"]);
}

#[test]
fn fresh_ignores_an_unfinished_run() {
    let t = Test::new()
        .traced("1-first", 0)
        .task("2-second", &format!("{TRACE}\necho x > \"$TRACE.started\"\nexec sleep 30"));
    let mut first = t.spawn();
    assert!(eventually(20, || t.path().join("trace.started").exists()));
    first.signal("TERM");
    first.wait(20);
    std::fs::write(t.tasks_dir().join("2-second"), format!("#!/bin/sh\n{TRACE}\n")).expect("rewrite");
    let fresh = t.run_more_with(&["--fresh"]);
    assert_eq!(fresh.code(), 0);
    assert_eq!(fresh.trace(), ["1-first", "2-second", "1-first", "2-second"]);
}

#[test]
fn halted_run_is_not_resumed() {
    let t = Test::new().traced("a", 2).traced("halt.sh", 0);
    let ran = t.run_more_with(&[]);
    assert_eq!(ran.code(), 2);
    let j = journal(&t.path().join("state"));
    assert_eq!(j["run"]["status"], "finished");
    assert_eq!(j["run"]["exit_code"], 2);
    t.run_more_with(&["--resume"]).stderr_has("nothing to resume");
}

#[test]
fn run_once_survives_runs_and_can_be_forgotten() {
    let t = Test::new()
        .config("[once-task]\nrun = once\n[boot-task]\nrun = once-per-boot\n")
        .traced("once-task", 0)
        .traced("boot-task", 0)
        .traced("every", 0);
    assert_eq!(t.run_more_with(&[]).trace(), ["boot-task", "every", "once-task"]);
    assert_eq!(t.run_more_with(&[]).trace(), ["boot-task", "every", "once-task", "every"]);
    let forgot = t.run_more_with(&["--forget", "once-task"]);
    assert_eq!(forgot.code(), 0);
    forgot.stderr_has("forgotten");
    assert_eq!(t.run_more_with(&[]).trace(), ["boot-task", "every", "once-task", "every", "every", "once-task"]);
}

#[test]
fn run_once_task_that_fails_is_not_marked() {
    let t = Test::new().config("[runner]\nmax_tries = 1\n[x]\nrun = once\n").traced("x", 1).traced("halt.sh", 0);
    assert_eq!(t.run_more_with(&[]).code(), 1);
    assert_eq!(t.run_more_with(&[]).trace(), ["x", "halt.sh", "x", "halt.sh"]);
}

#[test]
fn forever_with_only_done_run_once_tasks_stops() {
    let t = Test::new().config("[x]\nrun = once\n").traced("x", 0);
    let ran = t.raw_args(["-c", "runner.cfg", "tasks.d"]).status(0);
    ran.stderr_has("every task was skipped");
    assert_eq!(ran.trace(), ["x"]);
}

#[test]
fn keep_logs_prunes_old_runs_and_zero_writes_none() {
    let t = Test::new().config("[runner]\nkeep_logs = 2\n").traced("a", 0);
    for _ in 0..4 {
        assert_eq!(t.run_more_with(&[]).code(), 0);
    }
    assert_eq!(log_dirs(&t.path().join("state")).len(), 2);
    let t = Test::new().config("[runner]\nkeep_logs = 0\n").task("a", "echo \"log=[$RUNNER_LOG_FILE]\"");
    let ran = t.run_more_with(&[]);
    ran.stdout_has("log=[]");
    assert!(log_dirs(&t.path().join("state")).is_empty());
}

#[test]
fn status_while_running_and_after() {
    let t = Test::new()
        .config("[runner]\nmax_tries = 1\n")
        .traced("1-ok", 0)
        .task("2-slow", "echo x > \"$TRACE.started\"\nsleep 30");
    let mut r = t.spawn();
    assert!(eventually(20, || t.path().join("trace.started").exists()));
    let st = t.run_more_with(&["--status"]);
    assert_eq!(st.code(), 0, "{}", st.describe());
    st.stdout_has(&format!("running (pid {})", r.pid())).stdout_has("current:      2-slow (try 1)").stdout_has("1-ok");
    let js = t.run_more_with(&["--status", "--json"]);
    let doc: Value = serde_json::from_str(&js.stdout()).expect("status json");
    assert_eq!(doc["phase"], "running");
    assert_eq!(doc["current"]["task"], "2-slow");
    assert_eq!(doc["current"]["index"], 2);
    assert_eq!(doc["tasks"][0]["file"], "1-ok");
    assert_eq!(doc["tasks"][0]["result"], "OK");
    r.signal("TERM");
    r.wait(20);
    let st = t.run_more_with(&["--status"]);
    st.stdout_has("status:       cancelled, exit 143").stdout_has("last failure: 2-slow CANCELLED");
    st.stdout_has("2-slow.log");
}

#[test]
fn status_shows_next_retry() {
    let t =
        Test::new().config("[runner]\nsleep_time = 30\nmax_tries = 2\n").task("a", "echo x > \"$TRACE.ran\"\nexit 1");
    let mut r = t.spawn();
    assert!(eventually(20, || std::fs::read_to_string(t.path().join("err")).is_ok_and(|s| s.contains("sleeping"))));
    t.run_more_with(&["--status"]).stdout_has("next retry:   20").stdout_has("iteration:    1, try 2");
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
}

#[test]
fn status_without_state() {
    Test::new().traced("a", 0).args(["--status"]).status(0).stdout_has("no run recorded");
}

#[test]
fn a_signal_ends_the_wait_for_the_lock() {
    let t = Test::new().task("a", "[ -e \"$TRACE.go\" ] && exit 0\necho x > \"$TRACE.started\"\nexec sleep 30");
    let mut first = t.spawn();
    assert!(eventually(20, || t.path().join("trace.started").exists()));
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_runner"));
    cmd.args(["-c", "runner.cfg", "-n", "1", "--wait", "tasks.d"]).current_dir(t.path());
    let err = t.path().join("second.err");
    let mut second = cmd.stderr(std::fs::File::create(&err).expect("err")).spawn().expect("second runner");
    assert!(eventually(20, || std::fs::read_to_string(&err).is_ok_and(|s| s.contains("waiting for the chain lock"))));
    let _ = std::process::Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    // The lock holder's task sleeps 30 s: only the signal can end the wait.
    let mut status = None;
    assert!(eventually(10, || {
        status = second.try_wait().ok().flatten();
        status.is_some()
    }));
    assert_eq!(status.and_then(|s| s.code()), Some(143));
    first.signal("TERM");
    assert_eq!(first.wait(20), 143);
}

#[test]
fn resume_after_the_last_task_went_on_to_the_next_iteration() {
    // A crash after the last task's commit, before the run's end: every task
    // of iteration 1 is done, so --resume goes on with iteration 2.
    let t = Test::new().task("a", "echo \"a $RUNNER_ITERATION\" >> \"$TRACE\"");
    assert_eq!(t.run_more().code(), 0);
    let path = t.path().join("state/state.json");
    let text = std::fs::read_to_string(&path).expect("journal");
    std::fs::write(&path, text.replace("\"status\":\"finished\"", "\"status\":\"running\"")).expect("edit");
    let resumed = t.run_more_with(&["--resume", "-n", "2"]);
    assert_eq!(resumed.code(), 0, "{}", resumed.describe());
    resumed.stderr_lacks("nothing to do");
    assert_eq!(resumed.trace(), ["a 1", "a 2"]);
}

#[test]
fn temp_files_of_a_killed_writer_are_cleaned_up() {
    let t = Test::new().traced("a", 0);
    assert_eq!(t.run_more().code(), 0);
    let stale = t.path().join("state/.state.AbC123");
    std::fs::write(&stale, "{half a jour").expect("stale");
    assert_eq!(t.run_more().code(), 0);
    assert!(!stale.exists());
}

#[test]
fn once_per_instance_runs_again_on_a_clone() {
    // RUNNER_INSTANCE_ID_FILE stands in for the machine's identity (the
    // cloud instance id, else /etc/machine-id): a clone has another one.
    let t = Test::new().config("[a]\nrun = once-per-instance\n").traced("a", 0).traced("b", 0).file_mode(
        "instance-id",
        "i-0123\n",
        0o644,
    );
    let id = t.path().join("instance-id");
    let t = t.env("RUNNER_INSTANCE_ID_FILE", id.as_os_str());
    assert_eq!(t.run_more().code(), 0);
    assert_eq!(t.run_more().code(), 0);
    assert_eq!(std::fs::read_to_string(t.path().join("trace")).unwrap_or_default(), "a\nb\nb\n");
    // The image is cloned: a new identity, and the task runs once more.
    std::fs::write(&id, "i-4567\n").expect("clone");
    assert_eq!(t.run_more().code(), 0);
    assert_eq!(t.run_more().code(), 0);
    assert_eq!(std::fs::read_to_string(t.path().join("trace")).unwrap_or_default(), "a\nb\nb\na\nb\nb\n");
    let st = t.run_more_with(&["--status"]);
    st.stdout_has("once per instance: a");
    // --forget clears it too.
    assert_eq!(t.run_more_with(&["--forget", "a"]).code(), 0);
    assert_eq!(t.run_more().code(), 0);
    assert!(std::fs::read_to_string(t.path().join("trace")).unwrap_or_default().ends_with("a\nb\n"));
}
