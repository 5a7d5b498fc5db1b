//! --check, --dry-run, the safety rule, and bad input of every kind.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::harness::*;

#[test]
fn check_clean_exits_0_and_runs_nothing() {
    let ran = Test::new().traced("a", 0).traced("halt.sh", 0).args(["--check"]).status(0);
    ran.stdout_has("0 error(s), 0 warning(s), 1 task(s)");
    assert!(ran.trace().is_empty());
}

#[test]
fn check_reports_every_problem_at_once() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = five\nmax_tim = 3\ninterpreter = /no/such/shell\n[a]\ndepends_on = nothere\n[b]\ndepends_on = c\n[c]\ndepends_on = b\n[setup]\nx = 1\n")
        .traced("a", 0)
        .traced("b", 0)
        .traced("c", 0)
        .traced("10-setup", 0)
        .traced("20-setup", 0)
        .file_mode("tasks.d/notes", "x", 0o644)
        .args(["--check"])
        .status(78);
    let out = ran.stdout();
    for want in [
        "runner.cfg:7: error: bad value for 'max_tries' in [runner]: 'five'",
        "runner.cfg:8: warning: unknown key 'max_tim' in [runner]; did you mean 'max_time'?",
        "error: interpreter '/no/such/shell' not found",
        "error: a depends on 'nothere', which is not a task",
        "error: dependency cycle: ",
        "error: section [setup] is ambiguous",
        "warning: halt task does not exist",
    ] {
        assert!(out.contains(want), "missing {want:?}\n{out}");
    }
    // With an interpreter set, the non-executable file is a task: no warning.
    assert!(!out.contains("notes: warning"), "{out}");
    assert!(ran.trace().is_empty());
}

#[test]
fn check_warns_about_non_executable_tasks_and_missing_hooks() {
    let ran = Test::new()
        .config("[runner]\ntask_hook = /no/such/hook\n")
        .traced("a", 0)
        .traced("halt.sh", 0)
        .file_mode("tasks.d/notes", "x", 0o644)
        .args(["--check"])
        .status(0);
    ran.stdout_has("notes: warning: not executable and no interpreter applies");
    ran.stdout_has("warning: task_hook program '/no/such/hook' not found");
}

#[test]
fn dry_run_prints_plan_with_origins_and_skips() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 3\ninclude_dir = conf.d\n[b]\ndepends_on = a\nrun = once\n")
        .file_mode("conf.d/10.cfg", "[a]\nmax_time = 0.5\n", 0o644)
        .traced("b", 0)
        .traced("a", 0)
        .traced("halt.sh", 0)
        .traced(".hidden", 0)
        .file_mode("tasks.d/plain", "x", 0o644)
        .args(["--dry-run"])
        .status(0);
    let out = ran.stdout();
    assert!(out.contains("   1. a  (name a)"), "{out}");
    assert!(out.contains("   2. b  (name b)"), "{out}");
    assert!(out.contains("max_tries      3"), "{out}");
    assert!(out.contains("[runner] ") && out.contains("runner.cfg:7"), "{out}");
    assert!(out.contains("conf.d/10.cfg:2"), "{out}");
    assert!(out.contains("max_time       600                   default"), "{out}");
    assert!(out.contains("run            once"), "{out}");
    assert!(out.contains("halt.sh") && out.contains("halt task"), "{out}");
    assert!(out.contains(".hidden") && out.contains("ignored file name"), "{out}");
    assert!(out.contains("plain") && out.contains("not executable"), "{out}");
    assert!(ran.trace().is_empty());
}

#[test]
fn dry_run_json_and_run_once_marker() {
    let t = Test::new().config("[b]\nrun = once\nmax_time = 0.25\n").traced("a", 0).traced("b", 0).traced("halt.sh", 0);
    assert_eq!(t.run_more().code(), 0);
    let ran = t.run_more_with(&["--dry-run", "--json"]);
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    let doc: Value = serde_json::from_str(&ran.stdout()).expect("one JSON document");
    let tasks = doc["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["file"], "a");
    assert_eq!(tasks[0]["max_tries"]["value"], 5);
    assert_eq!(tasks[0]["max_tries"]["from"], "default");
    assert_eq!(tasks[0]["sleep_time"]["value"], 0);
    let skipped = doc["skipped"].as_array().expect("skipped");
    let reasons: Vec<(String, String)> = skipped
        .iter()
        .map(|s| (s["file"].as_str().unwrap_or("").into(), s["reason"].as_str().unwrap_or("").into()))
        .collect();
    assert!(reasons.contains(&("b".into(), "run = once: already succeeded".into())), "{reasons:?}");
    assert!(reasons.contains(&("halt.sh".into(), "halt task".into())), "{reasons:?}");
    // Nothing ran again.
    assert_eq!(ran.trace(), ["a", "b"]);
}

#[test]
fn dry_run_with_config_error_is_78() {
    Test::new().config("[runner]\nmax_time = x\n").traced("a", 0).args(["--dry-run"]).status(78);
}

#[test]
fn safety_refuses_group_or_world_writable_files() {
    if !root_or_skip("safety_refuses_group_or_world_writable_files") {
        return;
    }
    for (rel, mode, what) in [
        ("tasks.d/a", 0o775, "insecure task: writable by group"),
        ("tasks.d/a", 0o757, "insecure task: writable by others"),
        ("tasks.d/halt.sh", 0o777, "insecure halt task: writable by group and others"),
        ("runner.cfg", 0o666, "insecure config file"),
        ("tasks.d", 0o777, "insecure task directory"),
        ("conf.d/x.cfg", 0o646, "insecure include file"),
    ] {
        let t = Test::new()
            .config("[runner]\ninclude_dir = conf.d\n")
            .file_mode("conf.d/x.cfg", "", 0o644)
            .traced("a", 0)
            .traced("halt.sh", 0);
        std::fs::write(t.config_path(), &t.config).expect("config");
        let cfg = t.config.clone();
        let t = t.config_exact(&cfg);
        let path = t.path().join(rel);
        let ran = {
            // The config is written by the harness before each run; set modes after.
            let mut cmd = t.command();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            cmd.output().expect("run")
        };
        let stderr = String::from_utf8_lossy(&ran.stderr);
        assert_eq!(ran.status.code(), Some(78), "{rel} {mode:o}\n{stderr}");
        assert!(stderr.contains(&path.display().to_string()) && stderr.contains(what), "{rel}\n{stderr}");
        assert!(!t.path().join("trace").exists(), "nothing ran");
    }
}

#[test]
fn safety_refuses_files_owned_by_others_and_check_reports_it() {
    if !root_or_skip("safety_refuses_files_owned_by_others_and_check_reports_it") {
        return;
    }
    let t = Test::new().traced("a", 0).traced("halt.sh", 0);
    let task = t.tasks_dir().join("a");
    std::os::unix::fs::chown(&task, Some(65534), None).expect("chown");
    let ran = t.run_more_with(&["--check"]);
    assert_eq!(ran.code(), 78);
    ran.stdout_has(&format!("{}: error: insecure task: owned by uid 65534, not root", task.display()));
    let ran = t.run_more();
    assert_eq!(ran.code(), 78);
    assert!(ran.trace().is_empty());
}

#[test]
fn allow_insecure_overrides_loudly() {
    if !root_or_skip("allow_insecure_overrides_loudly") {
        return;
    }
    let t = Test::new().traced("a", 0).traced("halt.sh", 0);
    std::fs::set_permissions(t.tasks_dir().join("a"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let ran = t.run_more_with(&["--allow-insecure"]);
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    ran.stderr_has("--allow-insecure").stderr_has("insecure task");
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn insecure_hook_program_given_as_path_is_refused() {
    if !root_or_skip("insecure_hook_program_given_as_path_is_refused") {
        return;
    }
    let t = Test::new().traced("a", 0).traced("halt.sh", 0).file_mode("hook.sh", "#!/bin/sh\n", 0o777);
    let hook = t.path().join("hook.sh");
    let t = t.config(&format!("[runner]\ntask_hook = {}\n", hook.display()));
    let ran = t.run_more();
    assert_eq!(ran.code(), 78);
    ran.stderr_has("insecure task_hook");
}

#[test]
fn corpus_of_bad_configs_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        for mode in [&["--check"][..], &["-n", "1"], &["-g", "runner.max_tries"]] {
            let t = Test::new().traced("a", 0).traced("halt.sh", 0);
            let mut args = vec!["-c".to_string(), path.display().to_string()];
            args.extend(mode.iter().map(|s| s.to_string()));
            args.push("tasks.d".into());
            let ran = t.raw_args(args).run();
            let code = ran.code();
            assert!(code == 0 || code == 78, "{path:?} {mode:?}: exit {code}\n{}", ran.describe());
            assert!(!ran.stderr().contains("panicked"), "{path:?}\n{}", ran.describe());
            if code == 78 {
                let file_named = ran.stderr().contains(&path.display().to_string())
                    || ran.stdout().contains(&path.display().to_string());
                assert!(file_named, "{path:?}: the error names the file\n{}", ran.describe());
            }
            n += 1;
        }
    }
    assert!(n >= 45, "corpus ran {n} cases");
}
