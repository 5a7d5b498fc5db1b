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

/// A chain in which task 2 asks for a reboot the first time it runs.
fn reboot_chain() -> Test {
    let mut t = Test::new().config("[runner]\nmax_tries = 3\nreboot_now_exit = 35\nhalt_task =\n");
    for i in 1..=4 {
        let ask = if i == 2 {
            "[ -e asked ] || { touch asked; echo \"end $RUNNER_TASK 35\" >> \"$TRACE\"; exit 35; }\n"
        } else {
            ""
        };
        t = t.task(
            &format!("{i}-t"),
            &format!(
                "echo \"start $RUNNER_TASK\" >> \"$TRACE\"\nsleep 0.0$(( $$ % 5 + 1 ))\n{ask}echo \"end $RUNNER_TASK\" >> \"$TRACE\""
            ),
        );
    }
    let t = t
        .task("reboot.sh", "echo reboot-task >> \"$TRACE\"\nsleep 0.0$(( $$ % 5 + 1 ))")
        .file_mode("boot-id", "0\n", 0o644);
    let id = t.path().join("boot-id");
    t.env("RUNNER_BOOT_ID_FILE", id.as_os_str())
}

#[test]
fn sigkill_around_a_reboot_then_resume_never_runs_the_next_task_in_the_same_boot() {
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
    let mut x = u64::from(seed) | 1;
    for round in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = x % 200;
        let t = reboot_chain();
        let cfg = t.config_path().to_string_lossy().into_owned();
        let dir = t.tasks_dir().to_string_lossy().into_owned();
        let mut r = t.spawn_raw(&["-c", &cfg, "-n", "1", "--resume", &dir], "");
        std::thread::sleep(Duration::from_millis(delay));
        r.signal("KILL");
        r.wait(20);
        let ctx = |what: &str| format!("seed {seed} round {round} delay {delay} ms: {what}");
        let mut boots = 0;
        loop {
            let resumed = t.run_more_with(&["--resume"]);
            match resumed.code() {
                0 => break,
                4 if boots < 6 => {
                    // The machine reboots: a new boot id, noted in the trace.
                    boots += 1;
                    std::fs::write(t.path().join("boot-id"), format!("{boots}\n")).expect("boot id");
                    let mut f = std::fs::OpenOptions::new().append(true).open(t.path().join("trace")).expect("trace");
                    std::io::Write::write_all(&mut f, b"boot\n").expect("trace");
                }
                code => panic!("{}", ctx(&format!("exit {code}\n{}", resumed.describe()))),
            }
        }
        let trace = std::fs::read_to_string(t.path().join("trace")).unwrap_or_default();
        let lines: Vec<&str> = trace.lines().collect();
        let first_3 = lines.iter().position(|l| *l == "start 3-t").unwrap_or_else(|| panic!("{}", ctx(&trace)));
        // The reboot task runs only once the request is recorded; from then
        // on, 3-t must wait for a new boot. (A request the killed runner
        // never recorded — 2-t exited 35 after runner died — is not one: 2-t
        // runs again on resume and ends 0.)
        if let Some(waited) = lines.iter().position(|l| *l == "reboot-task") {
            assert!(
                first_3 > waited && lines[waited..first_3].contains(&"boot"),
                "{}",
                ctx(&format!("3-t started in the boot 2-t asked to leave\n{trace}"))
            );
        }
        for task in 1..=4 {
            let ended = lines.iter().any(|l| l.starts_with(&format!("end {task}-t")));
            assert!(ended, "{}", ctx(&format!("{task}-t never ended\n{trace}")));
        }
    }
}
