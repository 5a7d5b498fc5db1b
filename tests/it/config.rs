//! Configuration: the INI dialect, typed values, bad values, includes,
//! `[env]`, per-task sections.

use crate::harness::*;

#[test]
fn dialect_colon_comments_continuation_case_merge_default() {
    let cfg = "\
# full-line comment
; another
[runner]
max_tries: 1
[DEFAULT]
Shared = from-default
[app]
Key = first
multi = one
  two
[app]
Key = second
";
    let t = Test::new().config_exact(cfg);
    let g = |key: &str| Test::new().config_exact(cfg).raw_args(["-c", "runner.cfg", "-g", key]).status(0).stdout();
    assert_eq!(g("app.Key"), "second\n");
    assert_eq!(g("app.key"), "");
    assert_eq!(g("app.multi"), "one\ntwo\n");
    assert_eq!(g("app.Shared"), "from-default\n");
    // max_tries: 1 with ':' is read: a failing task gives up at once.
    let ran = t.traced("a", 1).status(1);
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn bad_value_names_file_line_key_and_value() {
    let ran = Test::new().config("[runner]\nmax_tries = five\n").traced("a", 0).status(78);
    let cfg = ran.config_path().display().to_string();
    ran.stderr_has(&format!("{cfg}:7: bad value for 'max_tries' in [runner]: 'five'"));
    assert!(ran.trace().is_empty());
}

#[test]
fn bad_values_of_every_kind() {
    for bad in [
        "max_time = -1",
        "max_time = nan",
        "max_time = 1e999",
        "sleep_time = 99999999999999999999",
        "max_tries = 0",
        "max_tries = 4294967296",
        "retry_from = middle",
        "times = -2",
        "keep_logs = x",
        "kill_grace = soon",
        "task_hook = 'unterminated",
    ] {
        let ran = Test::new().config(&format!("[runner]\n{bad}\n")).traced("a", 0).run();
        assert_eq!(ran.code(), 78, "{bad}\n{}", ran.describe());
        assert!(ran.stderr().contains("runner.cfg:7:"), "{bad}\n{}", ran.describe());
        assert!(!ran.stderr().contains("panicked"), "{bad}");
    }
}

#[test]
fn all_errors_reported_at_once() {
    let ran = Test::new().config("[runner]\nmax_tries = x\nmax_time = y\n").traced("a", 0).status(78);
    ran.stderr_has("'max_tries'").stderr_has("'max_time'");
}

#[test]
fn unknown_runner_key_warns_with_suggestion() {
    Test::new()
        .config("[runner]\nmax_try = 3\n")
        .traced("a", 0)
        .status(0)
        .stderr_has("unknown key 'max_try' in [runner]; did you mean 'max_tries'?");
}

#[test]
fn default_keys_are_not_unknown_runner_keys() {
    Test::new().config("[DEFAULT]\ncolour = blue\n").traced("a", 0).status(0).stderr_lacks("unknown key");
}

#[test]
fn invalid_utf8_config_is_78_with_line() {
    let t = Test::new().traced("a", 0);
    std::fs::write(t.path().join("bad.cfg"), b"[runner]\nmax_tries = 1\n\xff\xfe\n").expect("write");
    t.raw_args(["-c", "bad.cfg", "-n", "1", "tasks.d"]).status(78).stderr_has("bad.cfg:3: invalid UTF-8");
}

#[test]
fn malformed_ini_is_78() {
    Test::new().config_exact("stray = 1\n").traced("a", 0).status(78).stderr_has("runner.cfg:1:");
}

#[test]
fn include_dir_relative_to_config_file_later_wins() {
    let t = Test::new()
        .file_mode(
            "etc/runner.cfg",
            "[runner]\ninclude_dir = conf.d\nsleep_time = 0\nretry_jitter = 0\n[app]\nv = main\n",
            0o644,
        )
        .file_mode("etc/conf.d/10-a.cfg", "[app]\nv = ten\n", 0o644)
        .file_mode("etc/conf.d/20-b.cfg", "[app]\nv = twenty\n", 0o644)
        .file_mode("etc/conf.d/30-c.cfg~", "[app]\nv = backup\n", 0o644);
    let ran = t.raw_args(["-c", "etc/runner.cfg", "-g", "app.v"]).status(0);
    assert_eq!(ran.stdout(), "twenty\n");
}

#[test]
fn include_file_bad_value_names_the_include_file() {
    let ran = Test::new()
        .config("[runner]\ninclude_dir = conf.d\n")
        .file_mode("conf.d/x.cfg", "[runner]\n\nmax_time = soon\n", 0o644)
        .traced("a", 0)
        .status(78);
    ran.stderr_has("conf.d/x.cfg:3: bad value for 'max_time'");
}

#[test]
fn missing_include_dir_is_78() {
    Test::new().config("[runner]\ninclude_dir = nope.d\n").traced("a", 0).status(78).stderr_has("nope.d");
}

#[test]
fn env_section_is_exported_and_values_never_logged() {
    let ran =
        Test::new().config("[env]\nMY_Var = s3cret-value\n").task("a", "echo \"got $MY_Var\"").args(["-v"]).status(0);
    ran.stdout_has("[a] got s3cret-value");
    ran.stderr_lacks("s3cret-value");
}

#[test]
fn per_task_section_by_name_and_by_file_name() {
    // By name: max_tries = 1 for "flaky" gives up at once.
    let ran = Test::new().config("[flaky]\nmax_tries = 1\n").traced("10-flaky.sh", 1).status(1);
    assert_eq!(ran.trace(), ["10-flaky.sh"]);
    // By file name.
    let ran = Test::new().config("[10-flaky.sh]\nmax_tries = 2\n").traced("10-flaky.sh", 1).status(1);
    assert_eq!(ran.trace(), ["10-flaky.sh", "10-flaky.sh"]);
}

#[test]
fn per_task_override_does_not_leak_to_other_tasks() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 3\n[first]\nmax_tries = 1\n")
        .traced("1-first", 0)
        .traced("2-second", 1)
        .status(1);
    assert_eq!(ran.trace(), ["1-first", "2-second", "2-second", "2-second"]);
}

#[test]
fn reference_mangled_section_name_accepted_with_warning() {
    let ran = Test::new().config("[checkami]\nmax_tries = 1\n").traced("3-check-ami.sh", 1).status(1);
    ran.stderr_has("mangled name");
    assert_eq!(ran.trace(), ["3-check-ami.sh"]);
}

#[test]
fn section_for_shared_name_is_78() {
    Test::new()
        .config("[setup]\nmax_tries = 1\n")
        .traced("10-setup", 0)
        .traced("20-setup", 0)
        .status(78)
        .stderr_has("ambiguous");
}

#[test]
fn shared_names_without_sections_run_both() {
    let ran = Test::new().traced("10-setup", 0).traced("20-setup", 0).status(0);
    assert_eq!(ran.trace(), ["10-setup", "20-setup"]);
}

#[test]
fn task_section_keys_are_free_form_for_get() {
    let ran = Test::new()
        .config("[check-ami]\nami_id = ami-123\n")
        .task("3-check-ami.sh", "$RUNNER_CONFIG_CMD -g check-ami.ami_id")
        .status(0);
    ran.stdout_has("[check-ami] ami-123");
}

#[test]
fn fractional_max_sleep_time_caps_backoff() {
    // Without the cap this would sleep at least 1000 s.
    let ran = Test::new()
        .config("[runner]\nsleep_time = 1000\nmax_sleep_time = 0.05\nmax_tries = 2\n")
        .traced("a", 1)
        .status(1);
    assert_eq!(ran.trace(), ["a", "a"]);
    ran.stderr_has("sleeping 0.050 s");
}

#[test]
fn retry_jitter_is_read() {
    // sleep_time 0: without the jitter every backoff would be 0.000 s. Five
    // backoffs all drawing under a millisecond of a 0.2 s jitter is a
    // one-in-10^15 event.
    let ran = Test::new().config("[runner]\nretry_jitter = 0.2\nmax_tries = 6\n").traced("a", 1).status(1);
    let sleeps: Vec<f64> = ran
        .stderr()
        .lines()
        .filter_map(|l| l.strip_prefix("runner: sleeping "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(sleeps.len(), 5, "{}", ran.describe());
    assert!(sleeps.iter().any(|&s| s > 0.0), "{sleeps:?}");
    assert!(sleeps.iter().all(|&s| s <= 0.2 * 1.14f64.powi(5) + 0.001), "{sleeps:?}");
    let bad = Test::new().config("[runner]\nretry_jitter = lots\n").traced("a", 0).status(78);
    bad.stderr_has("'retry_jitter'");
}

#[test]
fn per_task_sleep_jitter_and_kill_grace_override_runner() {
    // Globally the backoff would be at least 1000 s and the kill grace an
    // hour; the task's section brings both down.
    let ran = Test::new()
        .config("[runner]\nsleep_time = 1000\nretry_jitter = 5\nkill_grace = 3600\nmax_tries = 2\n[a]\nsleep_time = 0.01\nretry_jitter = 0\nkill_grace = 0.2\nmax_time = 0.2\n")
        .task("a", "trap '' TERM\necho x >> \"$TRACE\"\nwhile :; do sleep 0.05; done")
        .status(1);
    assert_eq!(ran.trace(), ["x", "x"]);
    ran.stderr_has("sleeping 0.011 s").stderr_has("sending SIGKILL");
}
