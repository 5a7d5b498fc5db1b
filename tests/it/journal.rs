//! The append-only journal: a task end is one appended, checksummed record;
//! a torn or corrupt tail is cut off and the run resumes from the last
//! whole record; `--status` reads it while it is written; the snapshot and
//! the log stay bounded.

use serde_json::Value;

use crate::harness::*;

fn status_json(t: &Test) -> Value {
    let (cfg, dir) = (t.config_path().display().to_string(), t.tasks_dir().display().to_string());
    let js = t.raw_args_run(&["-c", &cfg, "--status", "--json", &dir]);
    assert_eq!(js.code(), 0, "{}", js.describe());
    serde_json::from_str(&js.stdout()).expect("status json")
}

#[test]
fn a_torn_last_record_is_ignored_and_the_run_resumes() {
    // 3-c kills runner: 1-a and 2-b ended (durably), 3-c was running.
    let t = Test::new()
        .traced("1-a", 0)
        .traced("2-b", 0)
        .task("3-c", "echo c >> \"$TRACE\"\n[ -e \"$TRACE.go\" ] || kill -9 $PPID\nsleep 1")
        .traced("4-d", 0);
    assert_eq!(t.run_more().code(), -1);
    let log = t.path().join("state/state.log");
    let text = std::fs::read(&log).expect("log");
    assert!(text.ends_with(b"\n"));
    // Tear the 3-c start record in half, and add garbage after it.
    let last = text[..text.len() - 1].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut torn = text[..last + (text.len() - last) / 2].to_vec();
    torn.extend_from_slice(b"\x00\xffgarbage");
    std::fs::write(&log, &torn).expect("tear");
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let resumed = t.run_more_with(&["--resume"]);
    assert_eq!(resumed.code(), 0, "{}", resumed.describe());
    resumed.stderr_has("torn or corrupt tail").stderr_has("resuming run");
    assert_eq!(resumed.trace(), ["1-a", "2-b", "c", "c", "4-d"], "no finished task ran again, none was skipped");
    // The log is whole again: every line has a valid shape.
    let text = String::from_utf8_lossy(&std::fs::read(&log).expect("log")).into_owned();
    assert!(text.lines().all(|l| l.len() > 9 && l.as_bytes()[8] == b' ' && l[9..].starts_with('{')), "{text}");
}

#[test]
fn a_record_with_a_bad_checksum_ends_the_replay() {
    let t = Test::new()
        .traced("1-a", 0)
        .task("2-b", "echo b >> \"$TRACE\"\n[ -e \"$TRACE.go\" ] || kill -9 $PPID\nsleep 1");
    assert_eq!(t.run_more().code(), -1);
    let log = t.path().join("state/state.log");
    let mut text = std::fs::read(&log).expect("log");
    // Flip one byte inside the last record's JSON.
    let n = text.len();
    text[n - 10] ^= 0x20;
    std::fs::write(&log, &text).expect("flip");
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let resumed = t.run_more_with(&["--resume"]);
    assert_eq!(resumed.code(), 0, "{}", resumed.describe());
    resumed.stderr_has("torn or corrupt tail");
    assert_eq!(resumed.trace(), ["1-a", "b", "b"]);
}

#[test]
fn status_reads_the_journal_while_it_is_written() {
    let mut t = Test::new().config("[runner]\nkeep_logs = 0\n");
    for i in 0..40 {
        t = t.task(&format!("t{i:02}"), "exit 0");
    }
    let t = t.args(["-n", "5"]);
    let mut r = t.spawn();
    let mut reads = 0;
    while r.child.try_wait().ok().flatten().is_none() {
        let doc = status_json(&t);
        assert!(doc["phase"].is_string());
        reads += 1;
    }
    assert!(reads > 0);
    assert_eq!(r.wait(20), 0);
    let doc = status_json(&t);
    assert_eq!(doc["phase"], "finished");
}

#[test]
fn a_long_loop_keeps_a_bounded_journal() {
    // 100 tasks × 40 iterations append about 1.3 MB of records: past 1 MiB
    // the log is folded into the snapshot between iterations.
    let mut t = Test::new().config("[runner]\nkeep_logs = 0\n");
    for i in 0..100 {
        t = t.task(&format!("t{i:03}"), "exit 0");
    }
    let ran = t.run_more_with(&["-n", "40"]);
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    let log = std::fs::metadata(t.path().join("state/state.log")).expect("log").len();
    assert!(log < 1 << 20, "state.log is {log} bytes");
    let doc = status_json(&t);
    assert_eq!(doc["iteration"], 40);
    assert_eq!(doc["phase"], "finished");
}
