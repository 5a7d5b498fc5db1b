//! Drop-in fidelity with mozilla/build-runner: its INI dialect (Python
//! 2.7's RawConfigParser), `[env]` with `[DEFAULT]`, its dependency order,
//! an empty interpreter, abbreviated long options, the hook JSON text, and
//! its own test scenarios (tests/test-graph.py, tests/test-process-taskdir.py)
//! as black-box tests.

use crate::harness::*;

/// `runner -c CFG -g KEY` on a config of exactly `cfg`: (exit code, stdout).
fn get(cfg: &str, key: &str) -> (i32, String) {
    let ran = Test::new().config_exact(cfg).raw_args(["-c", "runner.cfg", "-g", key]).run();
    (ran.code(), ran.stdout())
}

#[test]
fn dialect_table() {
    // (config text, -g key, expected stdout)
    let table: &[(&str, &str, &str)] = &[
        ("[a]\nx = 1 ; seconds\n", "a.x", "1\n"),
        ("[a]\nx = 1\t; tab before\n", "a.x", "1\n"),
        ("[a]\nx = 1;not a comment\n", "a.x", "1;not a comment\n"),
        ("[a]\nx = a;b ;c\n", "a.x", "a;b ;c\n"),
        ("[a]\nx = ;lead\n", "a.x", ";lead\n"),
        ("[a]\nx = http://h/#frag\n", "a.x", "http://h/#frag\n"),
        ("[a]\nx = 1 # stays\n", "a.x", "1 # stays\n"),
        ("[a]\nx = \"\"\n", "a.x", "\n"),
        ("[a]\nx = \"\" ; empty\n", "a.x", "\n"),
        ("[a]\nx = \"quoted\"\n", "a.x", "\"quoted\"\n"),
        ("[a]\nx =\n", "a.x", "\n"),
        ("[a]\nrem a comment\nx = 1\n", "a.x", "1\n"),
        ("[a]\nREM = 5\nx = 1\n", "a.REM", ""),
        ("[a]\nRem\tnote\nx = 1\n", "a.x", "1\n"),
        ("[a]\nremark = 1\n", "a.remark", "1\n"),
        ("[a]\nrem=1\n", "a.rem", "1\n"),
        ("[a]\nx = one\n  two ; kept\n# comment\n\n\tthree\n", "a.x", "one\ntwo ; kept\nthree\n"),
        ("[a]\nx =\n  first\n", "a.x", "\nfirst\n"),
        ("[a]\nx: 1\n", "a.x", "1\n"),
        ("[a]\nx = a = b: c\n", "a.x", "a = b: c\n"),
        ("[a]\nurl: http://x:80/\n", "a.url", "http://x:80/\n"),
        ("[a]\nMixed = 1\n", "a.Mixed", "1\n"),
        ("[a]\nMixed = 1\n", "a.mixed", ""),
        ("[ a ]\nx = 1\n", " a .x", "1\n"),
        ("[ a ]\nx = 1\n", "a.x", ""),
        ("[a] trailing text\nx = 1\n", "a.x", "1\n"),
        ("[a]\r\nx = 1\r\n", "a.x", "1\n"),
        ("[a]\r\nx = ;c\r\n", "a.x", "\n"),
        ("[DEFAULT]\nd = 1\n[a]\n", "a.d", "1\n"),
        ("[DEFAULT]\nd = 1\n", "b.d", ""),
        ("[a]\nx = 1\n[b]\n[a]\ny = 2\n", "a.x", "1\n"),
        ("[a]\nx = 1\nx = 2\n", "a.x", "2\n"),
        ("[a]\nx = C:\\dir\\\ny = 1\n", "a.x", "C:\\dir\\\n"),
        ("[a]\nx = \\t\\n\n", "a.x", "\\t\\n\n"),
        ("[a]\nx = %(y)s\n", "a.x", "%(y)s\n"),
        ("[a]\nx = \u{a0}nbsp\u{a0}\n", "a.x", "\u{a0}nbsp\u{a0}\n"),
        ("\u{feff}[a]\nx = 1\n", "a.x", "1\n"),
        ("[a]\nk.dot = 1\n", "a.k.dot", "1\n"),
    ];
    for (cfg, key, want) in table {
        assert_eq!(get(cfg, key), (0, want.to_string()), "config {cfg:?}, -g {key:?}");
    }
}

#[test]
fn dialect_errors_name_file_and_line() {
    for (cfg, line) in [
        ("x = 1\n[a]\n", 1),
        ("  x = 1\n[a]\n", 1),
        ("[a]\n  indented = 1\n", 2),
        ("[a]\nx = 1\n[b]\n  indented\n", 4),
        ("[a]\nno separator\n", 2),
        ("[a]\n= 1\n", 2),
        ("[a\nx = 1\n", 1),
        ("[]\n", 1),
    ] {
        let ran = Test::new().config_exact(cfg).raw_args(["-c", "runner.cfg", "-g", "a.x"]).run();
        assert_eq!(ran.code(), 78, "{cfg:?}\n{}", ran.describe());
        assert!(ran.stderr().contains(&format!("runner.cfg:{line}:")), "{cfg:?}\n{}", ran.describe());
        assert_eq!(ran.stderr().lines().count(), 1, "{cfg:?}\n{}", ran.describe());
    }
}

#[test]
fn error_lines_quote_40_characters_and_nothing_from_env() {
    let long = "x".repeat(100);
    let ran = Test::new().config_exact(&format!("[a]\n{long}\n")).raw_args(["-c", "runner.cfg", "-g", "a.x"]).run();
    assert_eq!(ran.code(), 78);
    ran.stderr_has(&format!("'{}...'", "x".repeat(40))).stderr_lacks(&"x".repeat(41));
    for section in ["env", "DEFAULT"] {
        let ran = Test::new()
            .config_exact(&format!("[{section}]\nTOKEN hunter2-secret\n"))
            .raw_args(["-c", "runner.cfg", "-g", "a.x"])
            .run();
        assert_eq!(ran.code(), 78, "{}", ran.describe());
        ran.stderr_has("runner.cfg:2:").stderr_lacks("hunter2");
    }
}

#[test]
fn halt_task_with_inline_comment_is_the_halt_task() {
    let ran = Test::new()
        .config("[runner]\nhalt_task = halt.sh ; reboots the box\nmax_time = 30 ; seconds\n")
        .traced("1-a", 0)
        .traced("2-b", 2)
        .file_mode("tasks.d/halt.sh", &format!("#!/bin/sh\n{TRACE}\n"), 0o755)
        .expect(2)
        .expect_stderr("halting: running")
        .run();
    assert_eq!(ran.trace(), ["1-a", "2-b", "halt.sh"]);
    ran.stderr_lacks("halt task does not exist");
}

#[test]
fn inline_comments_apply_in_every_section() {
    let ran = Test::new()
        .config(
            "[runner]\nmax_tries = 1 ; once\ntask_hook = /bin/sh -c 'echo \"$0\" >> \"$TRACE\"' hooked ; comment\n\
             [env]\nGREETING = hello ; not exported\n[b]\ndepends_on = c ; first\n",
        )
        .task("a", &format!("echo \"env:$GREETING\" >> \"$TRACE\"\n{TRACE}"))
        .traced("b", 0)
        .traced("c", 0)
        .status(0);
    assert_eq!(ran.trace(), ["hooked", "env:hello", "a", "hooked", "hooked", "c", "hooked", "hooked", "b", "hooked"]);
}

#[test]
fn env_exports_default_keys_when_env_exists() {
    let ran = Test::new()
        .config("[DEFAULT]\nFROM_DEFAULT = d\nBOTH = default\n[env]\nBOTH = env\n")
        .task("a", "echo \"$FROM_DEFAULT/$BOTH\" >> \"$TRACE\"")
        .status(0);
    assert_eq!(ran.trace(), ["d/env"]);
    // No [env] section: nothing from [DEFAULT] is exported.
    let ran = Test::new()
        .config("[DEFAULT]\nFROM_DEFAULT = d\n")
        .task("a", "echo \"${FROM_DEFAULT:-unset}\" >> \"$TRACE\"")
        .status(0);
    assert_eq!(ran.trace(), ["unset"]);
}

#[test]
fn ordering_examples_of_the_reference() {
    fn order(files: &[&str], config: &str) -> Vec<String> {
        let t = files.iter().fold(Test::new(), |t, f| t.traced(f, 0)).config(config);
        t.status(0).trace()
    }
    assert_eq!(order(&["1-x", "2-y", "3-z"], "[1-x]\ndepends_on = 3-z\n"), ["3-z", "1-x", "2-y"]);
    assert_eq!(order(&["1-setup", "5-app", "9-net"], "[1-setup]\ndepends_on = 9-net\n"), ["9-net", "1-setup", "5-app"]);
    assert_eq!(
        order(&["1-a", "2-b", "3-c", "4-d", "5-z"], "[5-z]\ndepends_on = 1-a, 2-b, 3-c\n"),
        ["4-d", "1-a", "2-b", "3-c", "5-z"]
    );
    // --dry-run shows the same order.
    let ran = Test::new()
        .traced("1-x", 0)
        .traced("2-y", 0)
        .traced("3-z", 0)
        .config("[1-x]\ndepends_on = 3-z\n")
        .args(["--dry-run", "--json"])
        .status(0);
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout()).expect("json");
    let files: Vec<&str> = plan["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["file"].as_str()).collect();
    assert_eq!(files, ["3-z", "1-x", "2-y"]);
}

/// tests/test-graph.py: test_graph_ok_multi_deps, test_graph_missing,
/// test_graph_cycle (the single-deps and no-deps cases are in order.rs).
#[test]
fn reference_graph_cases() {
    let multi = [
        ("cleanup", "update_shared_repos"),
        ("clobber", "checkout_tools"),
        ("check_ami", ""),
        ("check_slavealloc", ""),
        ("killprocs", "update_shared_repos"),
        ("checkout_tools", "check_ami, check_slavealloc"),
        ("purge_builds", "clobber"),
        ("update_shared_repos", "purge_builds"),
        ("buildbot", "cleanup, killprocs"),
        ("done", "buildbot"),
    ];
    let mut t = Test::new();
    let mut cfg = String::new();
    for (task, deps) in multi {
        t = t.traced(task, 0);
        if !deps.is_empty() {
            cfg.push_str(&format!("[{task}]\ndepends_on = {deps}\n"));
        }
    }
    let trace = t.config(&cfg).status(0).trace();
    let at = |n: &str| trace.iter().position(|t| t == n).expect(n);
    assert_eq!(trace.len(), 10);
    assert!(at("cleanup") > at("update_shared_repos"));
    assert_eq!(trace.last().map(String::as_str), Some("done"));
    assert!(at("checkout_tools") > at("check_ami"));
    assert!(at("checkout_tools") > at("check_slavealloc"));
    assert!(at("buildbot") > at("cleanup"));
    assert!(at("buildbot") > at("killprocs"));

    let base = |extra: &str| {
        ["apples", "final", "bees", "birds", "oranges"].iter().fold(Test::new(), |t, n| t.traced(n, 0)).config(
            &format!("[final]\ndepends_on = bees\n[bees]\ndepends_on = birds\n[oranges]\ndepends_on = apples{extra}\n"),
        )
    };
    // missing: nothing provides birds
    let ran = ["apples", "final", "bees", "oranges"]
        .iter()
        .fold(Test::new(), |t, n| t.traced(n, 0))
        .config("[final]\ndepends_on = bees\n[bees]\ndepends_on = birds\n[oranges]\ndepends_on = apples\n")
        .status(78);
    ran.stderr_has("'birds', which is not a task");
    assert!(ran.trace().is_empty());
    // cycle: oranges also needs bees
    let ran = base(", bees\n[birds]\ndepends_on = oranges").status(78);
    ran.stderr_has("dependency cycle");
    assert!(ran.trace().is_empty());
}

#[test]
fn empty_interpreter_means_none() {
    // [runner] interpreter = "" runs tasks directly.
    for empty in ["interpreter =", "interpreter = \"\"", "interpreter = \"\" ; none"] {
        let ran = Test::new().config(&format!("[runner]\n{empty}\n")).traced("a", 0).status(0);
        assert_eq!(ran.trace(), ["a"], "{empty}");
    }
    // A task section switches a global interpreter off for one task.
    let ran = Test::new()
        .config("[runner]\ninterpreter = /bin/sh -c 'echo interpreted >> \"$TRACE\"'\n[b]\ninterpreter =\n")
        .traced("a", 0)
        .traced("b", 0)
        .status(0);
    assert_eq!(ran.trace(), ["interpreted", "b"]);
}

#[test]
fn long_options_may_be_abbreviated() {
    let t = Test::new().traced("a", 0);
    let ran = t.raw_args(["--conf", "runner.cfg", "--time", "1", "--verb", "--halt", "tasks.d"]).run();
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    assert_eq!(ran.trace(), ["a"]);
    ran.stderr_has("debug:");
    // Ambiguous: --sta is --status or --state-dir.
    Test::new().raw_args(["--sta", "tasks.d"]).status(64);
}

#[test]
fn hook_json_text_is_the_references() {
    let hook = "/bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE\"' hook";
    let ran = Test::new()
        .config(&format!("[runner]\nmax_tries = 2\ntask_hook = {hook}\n"))
        .task("1-a", "exit 0")
        .task("2-caf\u{e9}", "exit 0")
        .status(0);
    let lines = ran.trace();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].starts_with(r#"{"try_num": 1, "max_retries": 2, "task": "1-a", "result": "RUNNING", "name": "a", "#),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(r#"{"try_num": 1, "max_retries": 2, "task": "1-a", "result": "OK", "name": "a", "#),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains(r#", "exit_code": 0, "signal": null, "timed_out": false, "duration_s": "#),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(r#"{"try_num": 1, "max_retries": 2, "task": "2-caf\u00e9", "result": "RUNNING", "#),
        "{}",
        lines[2]
    );
    assert!(lines.iter().all(|l| l.is_ascii()));
}

/// tests/test-process-taskdir.py: the default config runs the task dir.
#[test]
fn reference_default_config_runs_everything() {
    let ran = Test::new().raw_args(["-n", "1", "--state-dir", "state", "tasks.d"]);
    let ran = ran.traced("0-say-foo.py", 0).traced("1-say-bar.py", 0).status(0);
    assert_eq!(ran.trace(), ["0-say-foo.py", "1-say-bar.py"]);
}

/// test_tasks_pre_post_hooks: max_time 1, max_tries 1, a pre and a post
/// hook writing one JSON line each; every other line is a post hook with a
/// result.
#[test]
fn reference_pre_post_hooks() {
    let hook = "/bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE\"' hook";
    let ran = Test::new()
        .config(&format!("[runner]\nmax_time = 1\nmax_tries = 1\npre_task_hook = {hook}\npost_task_hook = {hook}\n"))
        .task("0-say-foo", "echo foo")
        .task("1-say-bar", "echo bar")
        .status(0);
    let lines = ran.trace();
    assert_eq!(lines.len(), 4);
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        assert!(v["task"].is_string() && v["try_num"].is_u64() && v["max_retries"].is_u64());
        let want = if i % 2 == 1 { "OK" } else { "RUNNING" };
        assert_eq!(v["result"], want);
    }
}

/// test_max_time and test_task_exit_codes.
#[test]
fn reference_max_time_and_exit_codes() {
    let ran = Test::new()
        .config("[runner]\nmax_time = 0.3\nmax_tries = 1\nkill_grace = 0.2\npost_task_hook = /bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE\"' hook\n")
        .task("a", "sleep 5")
        .status(1);
    let v: serde_json::Value = serde_json::from_str(&ran.trace()[0]).expect("json");
    assert_eq!(v["result"], "RETRY");
    assert_eq!(v["timed_out"], true);
    for (code, runner_code, halted) in [(0, 0, false), (1, 1, true), (2, 2, true), (3, 3, false)] {
        let ran = Test::new()
            .config("[runner]\nmax_tries = 1\n")
            .traced("a", code)
            .file_mode("tasks.d/halt.sh", "#!/bin/sh\necho halt >> \"$TRACE\"\n", 0o755)
            .status(runner_code);
        let want: Vec<&str> = if halted { vec!["a", "halt"] } else { vec!["a"] };
        assert_eq!(ran.trace(), want, "exit {code}");
    }
}

/// Retries with max_tries 2: a task that fails twice gives up; one that
/// fails once then succeeds goes on; exit 3 stops the chain at once.
#[test]
fn reference_retries_and_exit_3() {
    let ran =
        Test::new().config("[runner]\nmax_tries = 2\n").traced("1-a", 0).traced("2-b", 1).traced("3-c", 0).status(1);
    assert_eq!(ran.trace(), ["1-a", "2-b", "2-b"]);
    let flaky = format!("{TRACE}\n[ -f \"$TRACE.once\" ] && exit 0\ntouch \"$TRACE.once\"\nexit 1");
    let ran = Test::new().config("[runner]\nmax_tries = 2\n").task("1-a", &flaky).traced("2-b", 0).status(0);
    assert_eq!(ran.trace(), ["1-a", "1-a", "2-b"]);
    let ran = Test::new().config("[runner]\nmax_tries = 2\n").traced("1-a", 3).traced("2-b", 0).status(3);
    assert_eq!(ran.trace(), ["1-a"]);
}
