//! Supervision without gaps: a signal in every phase, halting recorded
//! before it starts, the task directory listed again every iteration, a
//! task that does not outlive a killed runner, escaped descendants of a
//! failed try, `kill_grace` for leftovers, leaked output that costs
//! nothing per leak, `--raw-output` as pass-through, bounded logs.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// A hook command that records its stats and then, when `$TRACE.block`
/// exists, writes its pid and sleeps (so a test can signal runner while it
/// runs).
const BLOCKING_HOOK: &str = "/bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE.hook\"; if [ -e \"$TRACE.block\" ]; then echo $$ > \"$TRACE.hookpid\"; sleep 30; fi' hook";

fn status_line(t: &Test) -> String {
    t.run_more_with(&["--status"]).stdout()
}

#[test]
fn sigterm_during_the_pre_hook() {
    let t = Test::new()
        .config(&format!("[runner]\npre_task_hook = {BLOCKING_HOOK}\n"))
        .traced("a", 0)
        .file_mode("tasks.d/halt.sh", "#!/bin/sh\necho halt >> \"$TRACE\"\n", 0o755)
        .file_mode("trace.block", "", 0o644);
    let mut r = t.spawn();
    let hook = pid_in(&t.path().join("trace.hookpid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert!(eventually(5, || !alive(hook)), "the hook was terminated");
    assert!(!t.path().join("trace").exists(), "neither the task nor the halt task ran");
    assert!(status_line(&t).contains("cancelled, exit 143"));
}

#[test]
fn sigterm_during_the_last_tasks_post_hook_is_143() {
    let t = Test::new().config(&format!("[runner]\npost_task_hook = {BLOCKING_HOOK}\n")).traced("a", 0).file_mode(
        "trace.block",
        "",
        0o644,
    );
    let mut r = t.spawn();
    let hook = pid_in(&t.path().join("trace.hookpid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert!(eventually(5, || !alive(hook)));
    assert!(status_line(&t).contains("cancelled, exit 143"));
}

#[test]
fn sigterm_during_a_gave_up_tasks_post_hook_runs_no_halt_task() {
    let t = Test::new()
        .config(&format!("[runner]\nmax_tries = 1\npost_task_hook = {BLOCKING_HOOK}\n"))
        .traced("a", 1)
        .file_mode("tasks.d/halt.sh", "#!/bin/sh\necho halt >> \"$TRACE\"\n", 0o755)
        .file_mode("trace.block", "", 0o644);
    let mut r = t.spawn();
    pid_in(&t.path().join("trace.hookpid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert_eq!(std::fs::read_to_string(t.path().join("trace")).unwrap_or_default(), "a\n", "no halt task");
}

#[test]
fn sigterm_during_the_halt_task_terminates_it_and_is_not_resumed() {
    let halt = "#!/bin/sh\necho halt >> \"$TRACE\"\necho $$ > \"$TRACE.haltpid\"\nsleep 30\n";
    let t = Test::new().traced("a", 2).file_mode("tasks.d/halt.sh", halt, 0o755);
    let mut r = t.spawn();
    let pid = pid_in(&t.path().join("trace.haltpid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert!(eventually(5, || !alive(pid)), "the halt task was terminated");
    assert!(status_line(&t).contains("cancelled, exit 143"));
    // The run had decided to halt: --resume does not go back into it.
    std::fs::write(t.path().join("tasks.d/halt.sh"), "#!/bin/sh\necho halt >> \"$TRACE\"\n").expect("halt");
    let again = t.run_more_with(&["--resume"]);
    again.stderr_has("not resuming");
    assert_eq!(again.trace(), ["a", "halt", "a", "halt"]);
}

#[test]
fn sigterm_during_the_halt_after_task() {
    let halt = "#!/bin/sh\necho $$ > \"$TRACE.haltpid\"\nsleep 30\n";
    let t = Test::new().traced("a", 0).file_mode("tasks.d/halt.sh", halt, 0o755).args(["-H"]);
    let mut r = t.spawn();
    let pid = pid_in(&t.path().join("trace.haltpid"));
    r.signal("INT");
    assert_eq!(r.wait(20), 130);
    assert!(eventually(5, || !alive(pid)));
}

#[test]
fn a_halt_that_reboots_is_not_run_again_by_resume() {
    // The halt task "reboots": it kills runner with SIGKILL.
    let halt = "#!/bin/sh\necho halt >> \"$TRACE\"\nkill -9 $PPID\n";
    let t = Test::new().traced("a", 0).file_mode("tasks.d/halt.sh", halt, 0o755);
    let first = t.run_more_with(&["-H", "--resume"]);
    assert_eq!(first.code(), -1, "killed: {}", first.describe());
    let js = t.run_more_with(&["--status", "--json"]);
    let doc: Value = serde_json::from_str(&js.stdout()).expect("json");
    assert_eq!(doc["phase"], "finished", "recorded before the halt task ran");
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["halting"], true);
    // At the next boot: a new run (the chain again, then -H), not a resume
    // straight into the halt.
    let second = t.run_more_with(&["-H", "--resume"]);
    second.stderr_lacks("resuming run");
    assert_eq!(second.trace(), ["a", "halt", "a", "halt"]);
}

#[test]
fn the_task_directory_is_listed_again_every_iteration() {
    let z = "echo \"z $RUNNER_ITERATION\" >> \"$TRACE\"\n\
             if [ \"$RUNNER_ITERATION\" = 1 ]; then rm \"$RUNNER_TASK_DIR_FOR_TEST/30-old\"; \
             printf '#!/bin/sh\\necho new >> \"$TRACE\"\\n' > \"$RUNNER_TASK_DIR_FOR_TEST/20-new\"; \
             chmod 755 \"$RUNNER_TASK_DIR_FOR_TEST/20-new\"; fi";
    let t = Test::new().traced("10-a", 0).traced("30-old", 0).task("99-z", z);
    let dir = t.tasks_dir();
    let t = t.env("RUNNER_TASK_DIR_FOR_TEST", dir.as_os_str());
    let ran = t.run_more_with(&["-n", "2"]);
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    assert_eq!(ran.trace(), ["10-a", "30-old", "z 1", "10-a", "new", "z 2"]);
    // A plan error at a later iteration ends the run with 78.
    let bad = "echo z >> \"$TRACE\"\nprintf '#!/bin/sh\\n' > \"$RUNNER_TASK_DIR_FOR_TEST/50-x\"\nchmod 755 \"$RUNNER_TASK_DIR_FOR_TEST/50-x\"";
    let t = Test::new().config("[50-x]\ndepends_on = nothere\n").task("99-z", bad);
    let dir = t.tasks_dir();
    let ran = t.env("RUNNER_TASK_DIR_FOR_TEST", dir.as_os_str()).args(["-n", "3"]).run();
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    ran.stderr_has("50-x depends on 'nothere'");
    assert_eq!(ran.trace(), ["z"]);
}

/// Runner's direct children (the watchdog among them).
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn a_task_does_not_outlive_a_runner_killed_with_sigkill() {
    let task = "sleep 60 &\necho $! > \"$TRACE.child\"\necho $$ > \"$TRACE.pid\"\nexec sleep 60";
    let t = Test::new().task("a", task);
    let mut r = t.spawn();
    let leader = pid_in(&t.path().join("trace.pid"));
    let child = pid_in(&t.path().join("trace.child"));
    r.signal("KILL");
    r.wait(20);
    assert!(eventually(10, || !alive(leader) && !alive(child)), "the task's group died with runner");
}

#[test]
fn resume_kills_what_the_interrupted_try_left_before_it_starts() {
    // The watchdog is killed too, so only --resume can clean up.
    let task = "echo \"$RUNNER_ATTEMPT_KEY\" >> \"$TRACE\"\n[ -e \"$TRACE.go\" ] && exit 0\n\
                setsid sleep 60 >/dev/null 2>&1 &\necho $! > \"$TRACE.daemon\"\necho $$ > \"$TRACE.pid\"\nexec sleep 60";
    let t = Test::new().task("a", task);
    let mut r = t.spawn();
    let leader = pid_in(&t.path().join("trace.pid"));
    let daemon = pid_in(&t.path().join("trace.daemon"));
    let watchdog = children(r.pid()).into_iter().find(|&p| cmdline(p).contains("--watchdog")).expect("watchdog");
    let _ = std::process::Command::new("kill").args(["-9", &watchdog.to_string()]).status();
    r.signal("KILL");
    r.wait(20);
    assert!(alive(leader) && alive(daemon), "without the watchdog the try is still running");
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let resumed = t.run_more_with(&["--resume"]);
    assert_eq!(resumed.code(), 0, "{}", resumed.describe());
    resumed.stderr_has("left from the interrupted try");
    assert!(eventually(5, || !alive(leader) && !alive(daemon)));
    let keys = resumed.trace();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the retry kept the attempt key");
}

#[test]
fn a_setsid_grandchild_of_a_failed_try_is_always_caught() {
    // The daemon's parent is still alive when the try fails: it is
    // reparented only after the group dies.
    let task = ": > \"$TRACE.daemons\"\n\
                sh -c 'setsid sleep 60 >/dev/null 2>&1 & echo $! >> \"$TRACE.daemons\"; exec sleep 60' >/dev/null 2>&1 &\n\
                while [ ! -s \"$TRACE.daemons\" ]; do sleep 0.01; done\nexit 1";
    for _ in 0..5 {
        let t = Test::new().config("[runner]\nmax_tries = 1\nkill_grace = 2\n").task("a", task);
        let ran = t.run_more();
        assert_eq!(ran.code(), 1, "{}", ran.describe());
        // (Whether the warning counts it depends on whether setsid had run
        // yet when the try failed; that it dies does not.)
        let pid: i32 =
            std::fs::read_to_string(t.path().join("trace.daemons")).unwrap_or_default().trim().parse().expect("pid");
        assert!(eventually(5, || !alive(pid)), "daemon {pid} escaped");
    }
}

#[test]
fn kill_grace_is_exact_for_a_leftover_holding_the_output() {
    let hook = "post_task_hook = /bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE\"' hook";
    let task = "sh -c \"trap '' TERM; while :; do sleep 0.05; done\" &\nexec sleep 60";
    let ran = Test::new()
        .config(&format!("[runner]\nmax_tries = 1\nmax_time = 0.3\nkill_grace = 0.6\n{hook}\n"))
        .task("a", task)
        .status(1);
    let stats: Value = serde_json::from_str(&ran.trace()[0]).expect("stats");
    let d = stats["duration_s"].as_f64().expect("duration");
    // SIGKILL at max_time + kill_grace = 0.9 s, not at the leader's exit plus
    // a drain (0.55 s).
    assert!((0.8..1.5).contains(&d), "duration {d}");
    assert_eq!(stats["timed_out"], true);
}

#[test]
fn leaked_output_costs_no_thread_and_bounded_fds() {
    let t = Test::new().task("a", "(sleep 3; echo late) &\nexit 0").env("RUNNER_DRAIN_MS", "1").args(["-n", "1000"]);
    let mut r = t.spawn();
    let (mut max_fds, mut max_threads) = (0, 0);
    let start = Instant::now();
    let code = loop {
        if let Ok(Some(status)) = r.child.try_wait() {
            break status.code().unwrap_or(-1);
        }
        let pid = r.pid();
        max_fds = max_fds.max(std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0));
        max_threads = max_threads.max(std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0));
        assert!(start.elapsed() < Duration::from_secs(120), "1,000 iterations took too long");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        code,
        0,
        "{}",
        std::fs::read_to_string(t.path().join("err"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("leaked") && !l.contains("iteration"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(max_fds < 64, "{max_fds} fds");
    assert!(max_threads <= 4, "{max_threads} threads");
}

#[test]
fn leaked_output_memory_stays_small() {
    // (The Test must outlive the run: it owns the temporary directory.)
    let t = Test::new().task("a", "(sleep 3; echo late) &\nexit 0").env("RUNNER_DRAIN_MS", "1").args(["-n", "1000"]);
    let mut r = t.spawn();
    let mut peak_kib = 0;
    let code = loop {
        let pid = r.pid();
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))
        {
            peak_kib = peak_kib.max(kib.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0));
        }
        if let Ok(Some(status)) = r.child.try_wait() {
            break status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(t.path().join("err")).unwrap_or_default();
    assert_eq!(code, Some(0), "{}", err.lines().filter(|l| !l.contains("leaked")).collect::<Vec<_>>().join("\n"));
    assert!(err.contains("1000 task(s) OK"), "the chain did not run its 1000 iterations");
    // Runner's own memory (anonymous pages), not the pages of its mapped
    // binary, which grow with the code and say nothing about leaks.
    assert!(peak_kib > 0 && peak_kib < 4 * 1024, "peak {peak_kib} KiB");
}

#[test]
fn raw_output_is_pass_through() {
    let task = "readlink /proc/$$/fd/1\nreadlink /proc/$$/fd/2 >&2\necho visible";
    let t = Test::new().task("a", task).args(["--raw-output"]);
    let mut r = t.spawn();
    assert_eq!(r.wait(20), 0);
    let out = std::fs::read_to_string(t.path().join("out")).unwrap_or_default();
    let err = std::fs::read_to_string(t.path().join("err")).unwrap_or_default();
    let out_path = t.path().join("out").canonicalize().expect("out");
    assert!(out.starts_with(&format!("{}\n", out_path.display())), "stdout is runner's own: {out}");
    assert!(err.contains(&t.path().join("err").canonicalize().expect("err").display().to_string()), "{err}");
    assert!(out.contains("visible\n") && !out.contains("[a]"), "no prefix: {out}");
}

#[test]
fn logs_are_kept_per_iteration_and_capped() {
    // 1,000 iterations of a task printing 100 KiB keep keep_logs iterations.
    let task = "head -c 102400 /dev/zero | tr '\\0' 'x' | fold -w 1000";
    let t = Test::new().config("[runner]\nkeep_logs = 5\n").task("a", task);
    let ran = t.run_more_with(&["-n", "1000"]);
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    let logs: Vec<String> = std::fs::read_dir(t.path().join("state/logs"))
        .expect("logs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs.len(), 5, "{logs:?}");
    assert!(logs.iter().any(|l| l.ends_with(".1000")), "{logs:?}");
    // One task's log within one iteration is capped, keeping the tail.
    let task = "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done";
    let t = Test::new().config("[runner]\nmax_log_size = 64K\n").task("a", task);
    assert_eq!(t.run_more().code(), 0);
    let dir = std::fs::read_dir(t.path().join("state/logs")).expect("logs").flatten().next().expect("run").path();
    let log = std::fs::read_to_string(dir.join("a.log")).expect("log");
    assert!(log.len() <= 64 * 1024, "{}", log.len());
    assert!(log.lines().next().unwrap_or("").contains("earlier bytes cut here"), "{}", &log[..200]);
    assert!(log.contains("[out] line 19999\n"));
    // Each try's log ends with its result line.
    let last = log.lines().last().unwrap_or("");
    assert!(last.contains("[runner] a: OK (exit 0 after"), "{last}");
}

#[test]
fn each_try_ends_with_a_result_line() {
    let t = Test::new().config("[runner]\nmax_tries = 2\n").task("a", "echo try $RUNNER_TRY_NUM\nexit 1");
    assert_eq!(t.run_more().code(), 1);
    let dir = std::fs::read_dir(t.path().join("state/logs")).expect("logs").flatten().next().expect("run").path();
    let log = std::fs::read_to_string(dir.join("a.log")).expect("log");
    let results: Vec<&str> = log.lines().filter(|l| l.contains("[runner] a: RETRY")).collect();
    assert_eq!(results.len(), 2, "{log}");
    assert!(results[0].contains("exit 1 after") && results[0].ends_with("try 1"), "{log}");
}
