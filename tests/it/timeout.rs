//! max_time: the whole process group gets SIGTERM, then SIGKILL after
//! kill_grace; leftovers of a failed try die before the retry.

use crate::harness::*;

#[test]
fn timeout_kills_task_and_grandchild() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 1\nmax_time = 0.3\n")
        .task("slow", "sleep 60 &\necho $! > \"$TRACE.child\"\nsleep 60")
        .status(1);
    ran.stderr_has("exceeded max_time");
    let pid: i32 = ran.read("trace.child").trim().parse().expect("child pid");
    assert!(eventually(5, || !alive(pid)), "grandchild {pid} survived");
}

#[test]
fn term_ignoring_task_is_killed_after_kill_grace() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 1\nmax_time = 0.3\nkill_grace = 0.3\n")
        .task("stubborn", "trap '' TERM\necho $$ > \"$TRACE.pid\"\nwhile :; do sleep 0.05; done")
        .task("zz-after", "echo after")
        .status(1);
    ran.stderr_has("sending SIGKILL");
    let pid: i32 = ran.read("trace.pid").trim().parse().expect("pid");
    assert!(!alive(pid));
}

#[test]
fn timed_out_is_in_the_hook_stats() {
    let ran = Test::new()
        .config(
            "[runner]\nmax_tries = 1\nmax_time = 0.2\npost_task_hook = /bin/sh -c 'echo \"$1\" >> \"$TRACE\"' hook\n",
        )
        .task("slow", "exec sleep 30")
        .status(1);
    let stats: serde_json::Value = serde_json::from_str(&ran.trace()[0]).expect("json");
    assert_eq!(stats["timed_out"], true);
    assert_eq!(stats["result"], "RETRY");
    assert_eq!(stats["signal"], 15);
}

#[test]
fn per_task_max_time_zero_means_no_limit() {
    Test::new()
        .config("[runner]\nmax_time = 0.01\n[a]\nmax_time = 0\n")
        .task("a", "sleep 0.3; echo done")
        .status(0)
        .stdout_has("[a] done");
}

#[test]
fn leftovers_of_a_failed_try_are_killed_before_the_retry() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 2\n")
        .task("a", "sleep 60 >/dev/null 2>&1 &\necho $! >> \"$TRACE\"\nexit 1")
        .status(1);
    let pids: Vec<i32> = ran.trace().iter().map(|s| s.parse().expect("pid")).collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(eventually(5, || !alive(pid)), "leftover {pid} survived");
    }
}

#[test]
fn leftovers_after_ok_are_left_alone() {
    let ran = Test::new().task("daemon", "sleep 30 >/dev/null 2>&1 &\necho $! >> \"$TRACE\"").status(0);
    let pid: i32 = ran.trace()[0].parse().expect("pid");
    assert!(alive(pid), "daemon {pid} was killed");
    let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
}

#[test]
fn a_failed_tasks_setsid_daemon_is_killed_too() {
    // The daemon leaves the task's process group with setsid; runner, as the
    // subreaper, adopts it and finds it by the task's attempt key.
    let ran = Test::new()
        .config("[runner]\nmax_tries = 1\n")
        .task("a", "setsid sleep 60 >/dev/null 2>&1 &\necho $! > \"$TRACE.pid\"\nsleep 0.2\nexit 1")
        .status(1);
    let pid: i32 = ran.read("trace.pid").trim().parse().expect("pid");
    assert!(eventually(5, || !alive(pid)), "escaped daemon {pid} survived its failed task");
    ran.stderr_has("escaped the process group");
}

#[test]
fn an_ok_tasks_setsid_daemon_is_left_alone() {
    let ran = Test::new()
        .config("[runner]\ntask_hook = /bin/true\n")
        .task("a", "setsid sleep 30 >/dev/null 2>&1 &\necho $! > \"$TRACE.pid\"\nsleep 0.2")
        .traced("b", 0)
        .status(0);
    let pid: i32 = ran.read("trace.pid").trim().parse().expect("pid");
    assert!(alive(pid), "the daemon of a task that succeeded was killed");
    let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
}
