//! What a task sees: environment, stdin, working directory, process group.

use crate::harness::*;

#[test]
fn runner_variables() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 4\n")
        .task(
            "10-show.sh",
            r#"for v in RUNNER_TASK RUNNER_TASK_NAME RUNNER_TRY_NUM RUNNER_MAX_TRIES RUNNER_ITERATION; do eval "echo $v=\$$v"; done
echo "RUNNER_RUN_ID=$RUNNER_RUN_ID"
echo "RUNNER_ATTEMPT_KEY=$RUNNER_ATTEMPT_KEY""#,
        )
        .status(0);
    for want in [
        "[show] RUNNER_TASK=10-show.sh",
        "[show] RUNNER_TASK_NAME=show",
        "[show] RUNNER_TRY_NUM=1",
        "[show] RUNNER_MAX_TRIES=4",
        "[show] RUNNER_ITERATION=1",
    ] {
        ran.stdout_has(want);
    }
    let out = ran.stdout();
    let run_id = out.lines().find_map(|l| l.strip_prefix("[show] RUNNER_RUN_ID=")).unwrap_or("");
    assert!(run_id.len() > 16, "{out}");
    let key = out.lines().find_map(|l| l.strip_prefix("[show] RUNNER_ATTEMPT_KEY=")).unwrap_or("");
    assert_eq!(key.len(), 36, "{out}");
}

#[test]
fn config_cmd_reads_config_from_a_task() {
    let ran = Test::new()
        .config("[hg]\nremote = https://example.invalid/repo\n")
        .task("a", "url=$($RUNNER_CONFIG_CMD -g hg.remote)\necho \"remote is $url\"")
        .status(0);
    ran.stdout_has("[a] remote is https://example.invalid/repo");
}

#[test]
fn attempt_key_kept_across_retries_and_renewed_after_ok() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 5\nretry_from = start\n")
        .task("1-a", r#"echo "a $RUNNER_ATTEMPT_KEY" >> "$TRACE""#)
        .task("2-b", r#"echo "b $RUNNER_ATTEMPT_KEY" >> "$TRACE"; [ "$RUNNER_TRY_NUM" -ge 3 ]"#)
        .status(0);
    let t = ran.trace();
    assert_eq!(t.len(), 6, "{t:?}");
    let key = |i: usize| t[i].split(' ').nth(1).unwrap_or("").to_string();
    // b fails twice then succeeds: the same key on all three tries.
    assert_eq!(key(1), key(3));
    assert_eq!(key(3), key(5));
    // a succeeded each time: a new key on every rerun.
    assert_ne!(key(0), key(2));
    assert_ne!(key(2), key(4));
    assert_ne!(key(0), key(1));
}

#[test]
fn stdin_is_dev_null_and_cwd_is_runners() {
    // runner's own stdin has a line to read: the task must not see it.
    let t = Test::new()
        .task("a", "if read line; then echo \"read: $line\"; else echo stdin-empty; fi\necho \"cwd=$(pwd)\"");
    let output = t.command().write_stdin("secret line\n").output().expect("run");
    let ran = Ran::from_output(output, t);
    assert_eq!(ran.code(), 0);
    ran.stdout_has("[a] stdin-empty");
    let cwd = std::fs::canonicalize(ran.path()).expect("canon");
    ran.stdout_has(&format!("[a] cwd={}", cwd.display()));
}

#[test]
fn each_task_runs_in_its_own_process_group() {
    let ran = Test::new().task("a", "ps -o pgid= -p $$ | tr -d ' '; echo $$").status(0);
    let out = ran.stdout();
    let lines: Vec<&str> = out.lines().map(|l| l.trim_start_matches("[a] ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], lines[1], "pgid equals the task's pid");
}

#[test]
fn config_path_with_white_space_warns_about_runner_config_cmd() {
    let t = Test::new().traced("a", 0).file_mode(
        "my dir/runner.cfg",
        "[runner]\nsleep_time = 0\nstate_dir = ../state\n",
        0o644,
    );
    std::fs::set_permissions(t.path().join("my dir"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let ran = t.raw_args(["-c", "my dir/runner.cfg", "-n", "1", "tasks.d"]).status(0);
    ran.stderr_has("RUNNER_CONFIG_CMD").stderr_has("white space");
}
