//! `run = on-change`: a task runs when its fingerprint (task file,
//! settings, own section, `[env]`, `inputs`) changed since its last OK, and
//! is skipped otherwise; `--force`, `--forget`, the explanations, and bad
//! `inputs`.

use crate::harness::*;

/// A chain of `a` (on-change, with `inputs`) and `b` (always).
fn chain(inputs: &str) -> Test {
    Test::new().config(&format!("[a]\nrun = on-change\ninputs = {inputs}\n")).traced("a", 0).traced("b", 0).file_mode(
        "in/site.conf",
        "listen 80\n",
        0o644,
    )
}

/// Runs once more and returns the tasks that ran in that run.
fn ran(t: &Test) -> Vec<String> {
    let before = std::fs::read_to_string(t.path().join("trace")).unwrap_or_default().lines().count();
    let r = t.run_more_with(&["-v"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.trace().into_iter().skip(before).collect()
}

fn write(t: &Test, rel: &str, text: &str) {
    let p = t.path().join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, text).expect("write");
}

#[test]
fn a_changed_file_input_runs_the_task_and_an_unchanged_one_skips_it() {
    let t = chain("in/site.conf");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    write(&t, "in/site.conf", "listen 8080\n");
    let r = t.run_more_with(&["-v"]);
    r.stderr_has("a: run: inputs changed (in/site.conf)");
    assert_eq!(ran(&t), ["b"]);
    // The same bytes written again are no change.
    write(&t, "in/site.conf", "listen 8080\n");
    assert_eq!(ran(&t), ["b"]);
}

#[test]
fn a_missing_plain_file_is_part_of_the_fingerprint() {
    let t = chain("in/extra.conf");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    write(&t, "in/extra.conf", "x\n");
    assert_eq!(ran(&t), ["a", "b"]);
    std::fs::remove_file(t.path().join("in/extra.conf")).expect("rm");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
}

#[test]
fn a_glob_sees_files_added_changed_and_removed() {
    let t = chain("in/*.tmpl");
    // Matching nothing is a value too: stable.
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    write(&t, "in/one.tmpl", "1\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    write(&t, "in/one.tmpl", "2\n");
    let r = t.run_more_with(&["-v"]);
    assert!(r.stderr().contains("inputs changed (") && r.stderr().contains("in/one.tmpl"), "{}", r.describe());
    // A file the glob does not match is no input.
    write(&t, "in/notes.txt", "x\n");
    assert_eq!(ran(&t), ["b"]);
    std::fs::remove_file(t.path().join("in/one.tmpl")).expect("rm");
    assert_eq!(ran(&t), ["a", "b"]);
}

#[test]
fn a_directory_input_covers_the_files_below_it() {
    let t = chain("in");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    write(&t, "in/sub/deep.conf", "x\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
}

#[test]
fn an_env_input_follows_runners_environment_and_env_section() {
    let t = chain("env:HG_SHARE").env("HG_SHARE", "/builds/hg-shared");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    let t = t.env("HG_SHARE", "/other");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    // [env] sets what the task sees; it wins over runner's environment.
    let t = t.config("[env]\nHG_SHARE = /from-config\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
}

#[test]
fn any_env_section_value_is_part_of_the_fingerprint_and_never_stored() {
    let t = chain("in/site.conf").config("[env]\nTOKEN = s3cret-value\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    let new = t.config.replace("s3cret-value", "n3w-s3cret");
    let t = t.config_exact(&new);
    assert_eq!(ran(&t), ["a", "b"]);
    for f in ["state/state.json", "state/markers.json", "state/state.log"] {
        let text = std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
        assert!(!text.contains("s3cret"), "{f} holds an [env] value: {text}");
    }
}

#[test]
fn a_command_input_is_its_output() {
    let t = chain("cmd:cat in/site.conf | tr a-z A-Z");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    write(&t, "in/site.conf", "listen 443\n");
    let r = t.run_more_with(&["-v"]);
    r.stderr_has("inputs changed (cmd:cat in/site.conf | tr a-z A-Z)");
    assert_eq!(ran(&t), ["b"]);
}

#[test]
fn a_failing_command_input_runs_the_task_with_a_warning_every_time() {
    let t = chain("cmd:echo no such thing >&2; exit 3");
    let r = t.run_more();
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.stderr_has("exited 3: no such thing");
    r.stderr_has("warning");
    // Nothing was recorded: it runs again.
    assert_eq!(ran(&t), ["a", "b"]);
}

#[test]
fn an_unreadable_input_runs_the_task_with_a_warning() {
    let t = chain("in/fifo");
    let fifo = t.path().join("in/fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let r = t.run_more();
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.stderr_has("in/fifo: not a regular file");
    assert_eq!(r.trace(), ["a", "b"]);
    assert_eq!(ran(&t), ["a", "b"]);
}

#[test]
fn the_task_file_settings_and_own_section_are_inputs() {
    let t = chain("in/site.conf");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    // The task file's bytes.
    write(&t, "tasks.d/a", &format!("#!/bin/sh\n{TRACE}\n# edited\n"));
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    // A key of its own section that only the task reads (with -g).
    let t = t.config("[a]\nversion = 2\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    // A [DEFAULT] key, which -g answers for the task's section too.
    let t = t.config("[DEFAULT]\nmirror = http://a.example/\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    // An effective setting inherited from [runner].
    let t = t.config("[runner]\nmax_time = 30\n");
    let r = t.run_more_with(&["-v"]);
    r.stderr_has("a: run: inputs changed (settings)");
    assert_eq!(ran(&t), ["b"]);
    // The interpreter.
    let t = t.config("[a]\ninterpreter = /bin/sh\n");
    assert_eq!(ran(&t), ["a", "b"]);
}

#[test]
fn a_failure_keeps_the_old_fingerprint_so_the_task_runs_again() {
    let t = chain("in/site.conf").config("[runner]\nmax_tries = 1\nhalt_task =\n");
    assert_eq!(ran(&t), ["a", "b"]);
    write(&t, "in/site.conf", "broken\n");
    write(&t, "tasks.d/a", &format!("#!/bin/sh\n{TRACE}\ngrep -q broken in/site.conf && exit 1\nexit 0\n"));
    let r = t.run_more();
    assert_eq!(r.code(), 1, "{}", r.describe());
    // Still failing: it keeps running (and failing) until it succeeds.
    assert_eq!(t.run_more().code(), 1);
    write(&t, "in/site.conf", "fixed\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
}

#[test]
fn a_retried_task_is_recorded_after_its_ok() {
    // Fails on the first try, succeeds on the second (within one run).
    let t = chain("in/site.conf");
    write(&t, "tasks.d/a", &format!("#!/bin/sh\n{TRACE}\n[ -e tried ] && exit 0\ntouch tried\nexit 1\n"));
    assert_eq!(ran(&t), ["a", "a", "b"]);
    assert_eq!(ran(&t), ["b"]);
}

#[test]
fn an_input_changed_while_the_task_ran_is_warned_about_and_not_recorded() {
    let t = chain("in/site.conf");
    write(&t, "tasks.d/a", &format!("#!/bin/sh\n{TRACE}\ndate +%N >> in/site.conf\n"));
    let r = t.run_more();
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.stderr_has("a: inputs changed while it ran (in/site.conf); fingerprint not recorded, it runs again next time");
    assert_eq!(ran(&t), ["a", "b"]);
}

#[test]
fn force_runs_a_task_whatever_its_run_mode() {
    let t = chain("in/site.conf").config("[b]\nrun = once\n");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(t.run_more().trace(), ["a", "b"]);
    let r = t.run_more_with(&["--force", "a", "--force", "b", "-v"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.stderr_has("a: run: forced (--force)");
    assert_eq!(r.trace(), ["a", "b", "a", "b"]);
    // By task name too; only the first time it comes up in the run.
    let r = t.run_more_with(&["--force", "a", "-n", "2"]);
    assert_eq!(r.trace(), ["a", "b", "a", "b", "a"]);
    // A name that is no task is a usage error.
    let r = t.run_more_with(&["--force", "nope"]);
    assert_eq!(r.code(), 64, "{}", r.describe());
    r.stderr_has("--force nope: no such task");
}

#[test]
fn forget_clears_a_fingerprint() {
    let t = chain("in/site.conf");
    assert_eq!(ran(&t), ["a", "b"]);
    assert_eq!(ran(&t), ["b"]);
    t.run_more_with(&["--status"]).stdout_has("on change:    a last OK at ");
    let r = t.run_more_with(&["--forget", "a"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.stderr_has("forgotten");
    assert_eq!(ran(&t), ["a", "b"]);
}

#[test]
fn dry_run_explains_each_decision() {
    let t = chain("in/site.conf");
    let r = t.run_more_with(&["--dry-run"]);
    r.stdout_has("decision       run: never succeeded");
    r.stdout_has("inputs         in/site.conf");
    assert!(r.trace().is_empty(), "--dry-run ran a task");
    assert_eq!(ran(&t), ["a", "b"]);
    let r = t.run_more_with(&["--dry-run"]);
    r.stdout_has("skip: unchanged since 20");
    write(&t, "in/site.conf", "listen 81\n");
    t.run_more_with(&["--dry-run"]).stdout_has("decision       run: inputs changed (in/site.conf)");
    t.run_more_with(&["--dry-run", "--force", "a"]).stdout_has("decision       run: forced (--force)");
    let r = t.run_more_with(&["--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout()).expect("json");
    assert_eq!(plan["tasks"][0]["why"], "run: inputs changed (in/site.conf)");
    assert_eq!(plan["tasks"][0]["inputs"]["value"][0], "in/site.conf");
    // The stored fingerprint names its parts, with digests only.
    let markers: serde_json::Value = serde_json::from_str(&r.read("state/markers.json")).expect("markers");
    let parts =
        markers["markers"].as_object().and_then(|m| m.values().next()).expect("dir")["on_change"]["a"]["parts"].clone();
    for name in ["task file", "settings", "section", "[env]", "interpreter", "in/site.conf"] {
        assert!(parts.get(name).is_some(), "no part {name}: {parts}");
    }
}

#[test]
fn bad_inputs_and_run_values_are_configuration_errors_with_their_line() {
    for (cfg, msg) in [
        ("[a]\nrun = on-change\ninputs = x.conf,,y.conf\n", "entry 2 is empty"),
        ("[a]\nrun = on-change\ninputs = env:\n", "expected env:NAME"),
        ("[a]\nrun = on-change\ninputs = env:A=B\n", "expected env:NAME"),
        ("[a]\nrun = on-change\ninputs = cmd:   \n", "expected cmd:COMMAND"),
        ("[a]\nrun = on-change\ninputs = in/[abc.conf\n", "not a valid glob"),
        ("[a]\nrun = always\ninputs = x.conf\n", "'inputs' in [a] applies only to run = on-change"),
        ("[a]\ninputs = x.conf\n", "applies only to run = on-change"),
        ("[a]\nrun = on_change\n", "expected 'always', 'once', 'once-per-boot', 'once-per-instance' or 'on-change'"),
    ] {
        let r = Test::new().config(cfg).traced("a", 0).run();
        assert_eq!(r.code(), 78, "{cfg}\n{}", r.describe());
        let line = cfg.lines().position(|l| l.starts_with("inputs") || l.starts_with("run = on_")).expect("line");
        // The config starts with 4 lines of [runner] and a blank one.
        r.stderr_has(&format!("runner.cfg:{}:", line + 6));
        r.stderr_has(msg);
        assert!(r.trace().is_empty());
        let r = Test::new().config(cfg).traced("a", 0).args(["--check"]).run();
        assert_eq!(r.code(), 78, "{cfg}\n{}", r.describe());
    }
}

#[test]
fn a_signal_while_a_command_input_runs_stops_runner_and_the_command() {
    let t = chain("cmd:echo $$ > cmd.pid; exec sleep 30");
    let cfg = t.config_path().to_string_lossy().into_owned();
    let dir = t.tasks_dir().to_string_lossy().into_owned();
    let mut r = t.spawn_raw(&["-c", &cfg, "-n", "1", &dir], "");
    let pid = pid_in(&t.path().join("cmd.pid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert!(eventually(10, || !alive(pid)), "the cmd: input outlived runner");
    assert!(std::fs::read_to_string(t.path().join("trace")).unwrap_or_default().is_empty(), "a task ran");
}
