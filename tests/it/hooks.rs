//! task_hook, pre_task_hook, post_task_hook and their stats JSON.

use serde_json::Value;

use crate::harness::*;

const RECORD: &str = "/bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE\"' hook";

fn stats(ran: &Ran) -> Vec<Value> {
    ran.trace().iter().map(|l| serde_json::from_str(l).expect("one JSON argument")).collect()
}

#[test]
fn task_hook_before_and_after_with_all_fields() {
    let ran = Test::new().config(&format!("[runner]\ntask_hook = {RECORD}\n")).task("10-a.sh", "exit 0").status(0);
    let s = stats(&ran);
    assert_eq!(s.len(), 2);
    let keys: Vec<&String> = s[0].as_object().expect("object").keys().collect();
    assert_eq!(keys[..4], ["try_num", "max_retries", "task", "result"]);
    assert_eq!(s[0]["task"], "10-a.sh");
    assert_eq!(s[0]["name"], "a");
    assert_eq!(s[0]["result"], "RUNNING");
    assert_eq!(s[0]["try_num"], 1);
    assert_eq!(s[0]["max_retries"], 5);
    assert_eq!(s[0]["iteration"], 1);
    for k in ["run_id", "attempt_key", "started_at"] {
        assert!(s[0][k].is_string(), "{k}");
        assert_eq!(s[0][k], s[1][k], "{k}");
    }
    assert_eq!(s[1]["result"], "OK");
    assert_eq!(s[1]["exit_code"], 0);
    assert_eq!(s[1]["signal"], Value::Null);
    assert_eq!(s[1]["timed_out"], false);
    assert!(s[1]["duration_s"].is_number());
    assert!(s[1]["finished_at"].is_string());
    assert!(s[1].get("log_file").is_some());
}

#[test]
fn results_in_post_hook() {
    for (code, want, runner_code) in [(1, "RETRY", 1), (2, "HALT", 2), (3, "EXIT", 3)] {
        let ran = Test::new()
            .config(&format!("[runner]\nmax_tries = 1\npost_task_hook = {RECORD}\n"))
            .task("a", &format!("exit {code}"))
            .status(runner_code);
        let s = stats(&ran);
        assert_eq!(s[0]["result"], want);
        assert_eq!(s[0]["exit_code"], code);
    }
}

#[test]
fn pre_and_post_hooks_only_run_at_their_time() {
    let ran = Test::new().config(&format!("[runner]\npre_task_hook = {RECORD}\n")).task("a", "exit 0").status(0);
    let s = stats(&ran);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["result"], "RUNNING");
    let ran = Test::new().config(&format!("[runner]\npost_task_hook = {RECORD}\n")).task("a", "exit 0").status(0);
    let s = stats(&ran);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["result"], "OK");
}

#[test]
fn quotes_in_task_name_cannot_break_or_inject() {
    let name = "it's \"quoted\" $(touch pwned) ; x";
    let ran = Test::new().config(&format!("[runner]\ntask_hook = {RECORD}\n")).task(name, "exit 0").status(0);
    let s = stats(&ran);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["task"], name);
    assert!(!ran.path().join("pwned").exists());
}

#[test]
fn hook_failure_is_logged_and_not_fatal() {
    let ran = Test::new().config("[runner]\ntask_hook = /bin/sh -c 'exit 9'\n").traced("a", 0).status(0);
    ran.stderr_has("task_hook: exited 9");
    assert_eq!(ran.trace(), ["a"]);
    let ran = Test::new().config("[runner]\ntask_hook = /no/such/hook\n").traced("a", 0).status(0);
    ran.stderr_has("task_hook: cannot start");
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn hook_gets_task_environment() {
    let ran = Test::new()
        .config("[runner]\npre_task_hook = /bin/sh -c 'echo \"hook sees $RUNNER_TASK $GREETING\" >> \"$TRACE\"'\n[env]\nGREETING = hi\n")
        .task("a", "exit 0")
        .status(0);
    assert_eq!(ran.trace(), ["hook sees a hi"]);
}

#[test]
fn hook_gets_the_tasks_max_time() {
    let ran = Test::new()
        .config("[runner]\nmax_time = 0.3\npre_task_hook = /bin/sh -c 'exec sleep 30'\n")
        .traced("a", 0)
        .status(0);
    ran.stderr_has("pre_task_hook: timed out");
    assert_eq!(ran.trace(), ["a"]);
}
