//! Command line: flags, `-g`, exit codes of usage and setup errors.

use crate::harness::*;

#[test]
fn version_and_help() {
    let ran = Test::new().raw_args(["--version"]).status(0);
    assert!(ran.stdout().starts_with("runner "), "{}", ran.describe());
    Test::new().raw_args(["--help"]).status(0).stdout_has("Examples:").stdout_has("--halt-after");
}

#[test]
fn bad_flag_is_usage_error_64() {
    Test::new().raw_args(["--no-such-flag"]).status(64);
    Test::new().raw_args(["-n", "many"]).status(64);
}

/// Runs `runner -c runner.cfg -g KEY` with `config` and returns stdout.
fn get(config: &str, key: &str) -> String {
    Test::new().config_exact(config).raw_args(["-c", "runner.cfg", "-g", key]).status(0).stdout()
}

#[test]
fn get_prints_raw_value() {
    let cfg = "[hg]\nremote = https://hg/x?a=b#c ; not a comment\n[a]\nb.c = dotted\n";
    // RawConfigParser: a ; after white space starts a comment; # does not.
    assert_eq!(get(cfg, "hg.remote"), "https://hg/x?a=b#c\n");
    assert_eq!(get(cfg, "a.b.c"), "dotted\n");
}

#[test]
fn get_default_fallback_and_missing() {
    let body = "[a]\nx = 1\n[DEFAULT]\nfallback = yes\n";
    for (key, want) in [("a.fallback", "yes\n"), ("a.missing", ""), ("nosection.x", ""), ("nosection.fallback", "")] {
        assert_eq!(get(body, key), want, "{key}");
    }
}

#[test]
fn get_without_dot_is_usage_error() {
    let t = Test::new();
    let c = t.config_path().display().to_string();
    t.raw_args(["-c", &c, "-g", "nodot"]).status(64);
}

#[test]
fn unreadable_config_is_78() {
    Test::new().raw_args(["-c", "/nonexistent/runner.cfg", "tasks.d"]).status(78).stderr_has("/nonexistent/runner.cfg");
}

#[test]
fn missing_taskdir_is_78() {
    let t = Test::new();
    let c = t.config_path().display().to_string();
    t.raw_args(["-c", &c]).status(78).stderr_has("TASKDIR");
    Test::new().raw_args(["-n", "1", "does-not-exist"]).status(78).stderr_has("does-not-exist");
}

#[test]
fn taskdir_that_is_a_file_is_78() {
    Test::new().file_mode("plain", "x", 0o644).raw_args(["-n", "1", "plain"]).status(78).stderr_has("not a directory");
}

#[test]
fn task_dir_from_config_relative_to_config_file() {
    let t = Test::new().traced("a", 0).file_mode("etc/runner.cfg", "[runner]\ntask_dir = ../tasks.d\n", 0o644);
    let ran = t.raw_args(["-c", "etc/runner.cfg", "-n", "1"]).status(0);
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn times_from_config_and_flag() {
    let ran =
        Test::new().config("[runner]\ntimes = 3\n").traced("a", 0).raw_args(["-c", "runner.cfg", "tasks.d"]).status(0);
    assert_eq!(ran.trace(), ["a", "a", "a"]);
    let ran = Test::new()
        .config("[runner]\ntimes = 3\n")
        .traced("a", 0)
        .raw_args(["-c", "runner.cfg", "-n", "2", "tasks.d"])
        .status(0);
    assert_eq!(ran.trace(), ["a", "a"]);
}

#[test]
fn halt_after_runs_halt_task_once_at_the_end() {
    let ran = Test::new()
        .traced("a", 0)
        .traced("halt.sh", 0)
        .raw_args(["-c", "runner.cfg", "-n", "2", "-H", "tasks.d"])
        .status(0);
    assert_eq!(ran.trace(), ["a", "a", "halt.sh"]);
}

#[test]
fn halt_after_without_bound_warns() {
    // Bounded by nothing: a task that stops the chain with 3 ends it.
    let ran = Test::new().traced("a", 3).traced("halt.sh", 0).raw_args(["-c", "runner.cfg", "-H", "tasks.d"]).status(3);
    ran.stderr_has("-H/--halt-after has no effect");
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn quiet_and_verbose() {
    let ran = Test::new().traced("a", 0).args(["-q"]).status(0);
    ran.stderr_lacks("iteration 1");
    let ran = Test::new().traced("a", 0).args(["-v"]).status(0);
    ran.stderr_has("debug:").stderr_has("a: OK");
}

#[test]
fn syslog_receives_runner_messages() {
    let t = Test::new().traced("a", 0);
    let sock_path = t.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    t.env("RUNNER_SYSLOG_SOCKET", sock_path.into_os_string()).args(["--syslog"]).status(0);
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if seen.last().is_some_and(|m| m.contains("iteration 1")) {
            break;
        }
    }
    let msg = seen.last().cloned().unwrap_or_default();
    assert!(msg.starts_with("<30>runner[") && msg.ends_with("iteration 1"), "{seen:?}");
}

#[test]
fn times_zero_means_forever() {
    // Forever, until the task says stop (exit 3) on the third iteration.
    for args in [&["-n", "0"][..], &[]] {
        let t = Test::new()
            .config("[runner]\ntimes = 0\n")
            .task("a", "echo \"$RUNNER_ITERATION\" >> \"$TRACE\"\n[ \"$RUNNER_ITERATION\" -lt 3 ] || exit 3");
        let mut all = vec!["-c", "runner.cfg"];
        all.extend_from_slice(args);
        all.push("tasks.d");
        let ran = t.raw_args(all).status(3);
        assert_eq!(ran.trace(), ["1", "2", "3"]);
    }
}

#[test]
fn halt_after_with_times_from_config() {
    let ran = Test::new()
        .config("[runner]\ntimes = 2\n")
        .traced("a", 0)
        .traced("halt.sh", 0)
        .raw_args(["-c", "runner.cfg", "-H", "tasks.d"])
        .status(0);
    assert_eq!(ran.trace(), ["a", "a", "halt.sh"]);
}
