//! Crash consistency: runner is SIGKILLed at random instants of a chain;
//! `--resume` must always load the state and finish the run, no task that
//! had finished runs again, and at most the interrupted task runs twice.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::*;

const TASKS: usize = 8;

fn chain() -> Test {
    let mut t = Test::new().config("[runner]\nmax_tries = 1\n");
    for i in 1..=TASKS {
        t = t.task(
            &format!("{i}-t"),
            "echo \"start $RUNNER_TASK $RUNNER_RUN_ID\" >> \"$TRACE\"\nsleep 0.0$(( $$ % 5 + 1 ))\necho \"end $RUNNER_TASK\" >> \"$TRACE\"",
        );
    }
    t
}

#[test]
fn sigkill_at_random_instants_then_resume() {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
    let mut x = u64::from(seed) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut finished_before_kill = 0;
    for round in 0..15 {
        let t = chain();
        let mut r = t.spawn();
        let delay = next() % 250;
        std::thread::sleep(Duration::from_millis(delay));
        r.signal("KILL");
        r.wait(20);
        // What the killed runner's try left is killed by its watchdog, and
        // by --resume before anything starts.
        let state = std::fs::read(t.path().join("state/state.json")).unwrap_or_default();
        let journal: serde_json::Value = serde_json::from_slice(&state).unwrap_or_default();
        if journal["run"]["status"] == "finished" {
            // The chain was done before the kill: nothing to check here.
            finished_before_kill += 1;
            continue;
        }
        let resumed = t.run_more_with(&["--resume"]);
        let ctx = format!("seed {seed} round {round} delay {delay} ms\n{}", resumed.describe());
        assert_eq!(resumed.code(), 0, "{ctx}");
        let trace = std::fs::read_to_string(t.path().join("trace")).unwrap_or_default();
        let mut starts: BTreeMap<String, usize> = BTreeMap::new();
        let mut run_ids = std::collections::BTreeSet::new();
        for line in trace.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f[0] == "start" {
                *starts.entry(f[1].to_string()).or_default() += 1;
                run_ids.insert(f[2].to_string());
            }
        }
        assert_eq!(starts.len(), TASKS, "every task ran\n{trace}\n{ctx}");
        let twice: Vec<_> = starts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.len() <= 1 && twice.iter().all(|(_, n)| **n == 2),
            "only the interrupted task may run twice: {twice:?}\n{trace}\n{ctx}"
        );
        assert!(run_ids.len() <= 1, "a resumed run keeps its run id: {run_ids:?}\n{ctx}");
    }
    assert!(finished_before_kill < 8, "most kills must land mid-run ({finished_before_kill} of 15 did not)");
}
