//! The task protocol: 0 OK, 2 HALT, 3 EXIT, everything else RETRY, the try
//! counter, retry_from, max_tries and the halt task.

use crate::harness::*;

#[test]
fn all_ok_exits_0() {
    let ran = Test::new().traced("a", 0).traced("b", 0).traced("halt.sh", 0).status(0);
    assert_eq!(ran.trace(), ["a", "b"]);
}

#[test]
fn exit_2_runs_halt_task_and_exits_2() {
    let ran = Test::new().traced("a", 2).traced("b", 0).traced("halt.sh", 0).status(2);
    assert_eq!(ran.trace(), ["a", "halt.sh"]);
}

#[test]
fn exit_3_stops_without_halt_task() {
    let ran = Test::new().traced("a", 3).traced("b", 0).traced("halt.sh", 0).status(3);
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn failing_second_task_with_max_tries_2() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 2\n")
        .traced("first", 0)
        .traced("second", 1)
        .traced("halt.sh", 0)
        .status(1);
    assert_eq!(ran.trace(), ["first", "second", "second", "halt.sh"]);
}

#[test]
fn retry_from_start_reruns_the_chain() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 2\nretry_from = start\n")
        .traced("first", 0)
        .traced("second", 1)
        .traced("halt.sh", 0)
        .status(1);
    assert_eq!(ran.trace(), ["first", "second", "first", "second", "halt.sh"]);
}

#[test]
fn retry_goes_on_at_the_failed_task_not_further() {
    // The reference's offset bug skipped tasks after a retry that did not
    // start at the first task.
    let ran = Test::new()
        .config("[runner]\nmax_tries = 5\n")
        .traced("1", 0)
        .task("2", &format!("{TRACE}\n[ \"$RUNNER_TRY_NUM\" -ge 2 ]"))
        .traced("3", 0)
        .task("4", &format!("{TRACE}\n[ \"$RUNNER_TRY_NUM\" -ge 3 ]"))
        .traced("5", 0)
        .traced("6", 0)
        .status(0);
    assert_eq!(ran.trace(), ["1", "2", "2", "3", "4", "4", "5", "6"]);
}

#[test]
fn try_counter_counts_tries_of_the_chain_within_an_iteration() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 3\n")
        .task(
            "a",
            "echo \"$RUNNER_TASK $RUNNER_TRY_NUM $RUNNER_ITERATION\" >> \"$TRACE\"\n[ \"$RUNNER_TRY_NUM\" -ge 2 ]",
        )
        .task("b", "echo \"$RUNNER_TASK $RUNNER_TRY_NUM $RUNNER_ITERATION\" >> \"$TRACE\"")
        .raw_args(["-c", "runner.cfg", "-n", "2", "tasks.d"])
        .status(0);
    assert_eq!(ran.trace(), ["a 1 1", "a 2 1", "b 2 1", "a 1 2", "a 2 2", "b 2 2"]);
}

#[test]
fn other_exit_codes_and_signals_are_retry() {
    for body in ["exit 1", "exit 4", "exit 255", "kill -9 $$"] {
        let ran = Test::new().config("[runner]\nmax_tries = 2\n").task("a", &format!("{TRACE}\n{body}")).status(1);
        assert_eq!(ran.trace(), ["a", "a"], "{body}");
    }
}

#[test]
fn broken_symlink_is_retry_naming_the_file() {
    let t = Test::new().config("[runner]\nmax_tries = 2\n");
    std::os::unix::fs::symlink("/nonexistent/target", t.tasks_dir().join("10-mount")).expect("ln");
    let ran = t.status(1);
    ran.stderr_has("10-mount").stderr_has("broken symlink to /nonexistent/target");
}

#[test]
fn broken_symlink_may_work_on_a_later_try() {
    // The first try fails; a hook creates the target before the second.
    let t = Test::new().config("[runner]\nmax_tries = 3\npost_task_hook = /bin/sh -c 'mkdir -p target && printf \"#!/bin/sh\\necho mounted\\n\" > target/t && chmod +x target/t' hook\n");
    std::os::unix::fs::symlink(t.path().join("target/t"), t.tasks_dir().join("t")).expect("ln");
    t.status(0).stdout_has("[t] mounted");
}

#[test]
fn exec_format_error_is_retry_naming_the_reason() {
    Test::new()
        .config("[runner]\nmax_tries = 1\n")
        .file_mode("tasks.d/garbage", "\u{1}\u{2}not a program", 0o755)
        .status(1)
        .stderr_has("garbage")
        .stderr_has("xec format error");
}

#[test]
fn missing_interpreter_is_retry_naming_it() {
    Test::new()
        .config("[runner]\nmax_tries = 1\ninterpreter = /no/such/bash\n")
        .traced("a", 0)
        .status(1)
        .stderr_has("cannot start interpreter /no/such/bash for ");
}

#[test]
fn missing_halt_task_warns_and_keeps_exit_code() {
    let ran = Test::new().traced("a", 2).status(2);
    ran.stderr_has("halt task does not exist; halting will fail");
    ran.stderr_has("cannot halt");
}

#[test]
fn custom_halt_task_with_global_interpreter() {
    let ran = Test::new()
        .config("[runner]\nhalt_task = stop-it\ninterpreter = /bin/sh\n")
        .traced("a", 2)
        .file_mode("tasks.d/stop-it", &format!("{TRACE}\n"), 0o644)
        .status(2);
    assert_eq!(ran.trace(), ["a", "stop-it"]);
}

#[test]
fn halt_task_exit_status_does_not_change_runners() {
    let ran = Test::new().config("[runner]\nmax_tries = 1\n").traced("a", 1).traced("halt.sh", 7).status(1);
    assert_eq!(ran.trace(), ["a", "halt.sh"]);
}

#[test]
fn per_task_max_tries_with_chain_try_counter() {
    // The try counter is the chain's; a task with max_tries 2 that fails on
    // try 2 gives up even if the global max is higher.
    let ran = Test::new()
        .config("[runner]\nmax_tries = 5\n[b]\nmax_tries = 2\n")
        .task("a", &format!("{TRACE}\n[ \"$RUNNER_TRY_NUM\" -ge 2 ]"))
        .traced("b", 1)
        .status(1);
    assert_eq!(ran.trace(), ["a", "a", "b"]);
}
