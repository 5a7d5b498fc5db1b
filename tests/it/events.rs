//! `--events FILE`: one JSON object per line for runs, tasks, sleeps, halts.

use serde_json::Value;

use crate::harness::*;

fn events(ran: &Ran, rel: &str) -> Vec<Value> {
    ran.read(rel).lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect()
}

#[test]
fn events_file_has_run_task_sleep_and_halt_events() {
    let ran = Test::new()
        .config("[runner]\nmax_tries = 2\n")
        .traced("a", 0)
        .task("b", "exit 1")
        .traced("halt.sh", 0)
        .args(["--events", "events.jsonl"])
        .status(1);
    let ev = events(&ran, "events.jsonl");
    let kinds: Vec<&str> = ev.iter().map(|e| e["event"].as_str().unwrap_or("")).collect();
    assert_eq!(
        kinds,
        [
            "run_start",
            "task_start",
            "task_end",
            "task_start",
            "task_end",
            "sleep",
            "task_start",
            "task_end",
            "halt_start",
            "halt_end",
            "run_end"
        ]
    );
    for e in &ev {
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    assert_eq!(ev[1]["task"], "a");
    assert_eq!(ev[1]["result"], "RUNNING");
    assert_eq!(ev[2]["result"], "OK");
    assert_eq!(ev[4]["result"], "RETRY");
    assert_eq!(ev[4]["exit_code"], 1);
    assert!(ev[5]["seconds"].is_number());
    assert_eq!(ev[5]["next_try"], 2);
    assert_eq!(ev[10]["exit_code"], 1);
}

#[test]
fn one_start_and_one_end_per_task() {
    let ran = Test::new().traced("a", 0).traced("b", 0).traced("c", 0).args(["--events", "ev"]).status(0);
    let ev = events(&ran, "ev");
    for task in ["a", "b", "c"] {
        for kind in ["task_start", "task_end"] {
            let n = ev.iter().filter(|e| e["event"] == kind && e["task"] == task).count();
            assert_eq!(n, 1, "{kind} {task}");
        }
    }
}

#[test]
fn events_to_stdout() {
    let ran = Test::new().task("a", "exit 0").args(["--events", "-"]).status(0);
    let lines: Vec<Value> = ran.stdout().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.first().map(|e| e["event"].clone()), Some("run_start".into()));
    assert_eq!(lines.last().map(|e| e["event"].clone()), Some("run_end".into()));
}

#[test]
fn events_file_that_cannot_be_opened_is_usage_error() {
    Test::new().traced("a", 0).args(["--events", "/nonexistent/dir/ev"]).status(64).stderr_has("--events");
}
