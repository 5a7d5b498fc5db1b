//! `backoff_factor`: the n-th sleep is `backoff_factor^n x U(sleep_time,
//! sleep_time + retry_jitter)`, capped by `max_sleep_time`; exact with
//! `retry_jitter = 0`; shown by `--dry-run`; bad values are 78.

use crate::harness::*;

/// The `seconds` of every `sleep` event of a run.
fn sleeps(t: &Test, extra: &[&str]) -> Vec<f64> {
    let mut args = vec!["--events", "events"];
    args.extend_from_slice(extra);
    let r = t.run_more_with(&args);
    assert_eq!(r.code(), 1, "{}", r.describe());
    std::fs::read_to_string(t.path().join("events"))
        .expect("events")
        .lines()
        .filter(|l| l.contains("\"event\":\"sleep\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["seconds"].as_f64().expect("seconds"))
        .collect()
}

#[test]
fn the_sleeps_grow_by_the_factor_exactly() {
    let t = Test::new()
        .config("[runner]\nsleep_time = 0.01\nretry_jitter = 0\nbackoff_factor = 2\nmax_tries = 5\nhalt_task =\n")
        .traced("a", 1);
    assert_eq!(sleeps(&t, &[]), [0.02, 0.04, 0.08, 0.16]);
}

#[test]
fn the_default_factor_is_the_references_and_the_cap_applies() {
    let t =
        Test::new().config("[runner]\nsleep_time = 0.1\nretry_jitter = 0\nmax_tries = 4\nhalt_task =\n").traced("a", 1);
    // 1.14^n x 0.1, to the millisecond.
    assert_eq!(sleeps(&t, &[]), [0.114, 0.13, 0.148]);
    let t = t.config("[runner]\nbackoff_factor = 3\nmax_sleep_time = 0.5\n");
    std::fs::remove_file(t.path().join("events")).expect("rm");
    assert_eq!(sleeps(&t, &[]), [0.3, 0.5, 0.5]);
}

#[test]
fn a_task_section_sets_its_own_factor() {
    let t = Test::new()
        .config("[runner]\nsleep_time = 0.01\nretry_jitter = 0\nmax_tries = 3\nhalt_task =\n[a]\nbackoff_factor = 1\n")
        .traced("a", 1);
    assert_eq!(sleeps(&t, &[]), [0.01, 0.01]);
}

#[test]
fn dry_run_shows_the_schedule() {
    let t = Test::new()
        .config("[runner]\nsleep_time = 1\nretry_jitter = 0\nbackoff_factor = 2\nmax_tries = 4\n")
        .traced("a", 0);
    let r = t.run_more_with(&["--dry-run"]);
    r.stdout_has("backoff_factor 2");
    r.stdout_has("backoff        2 s, 4 s, 8 s; before giving up 14 s");
    let r = t.run_more_with(&["--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout()).expect("json");
    let s = &plan["tasks"][0]["schedule"];
    assert_eq!(s["first"], serde_json::json!([[2.0, 2.0], [4.0, 4.0], [8.0, 8.0]]));
    assert_eq!(s["total"], serde_json::json!([14.0, 14.0]));
    assert_eq!(plan["tasks"][0]["backoff_factor"]["value"], 2.0);
    // With jitter: shortest and longest.
    let t = t.config("[runner]\nretry_jitter = 30\nbackoff_factor = 1.14\nmax_tries = 5\n");
    t.run_more_with(&["--dry-run"])
        .stdout_has("backoff        1-35 s, 1-40 s, 1-45 s, 1-52 s; before giving up 4 s-2m52s");
}

#[test]
fn bad_factors_are_configuration_errors() {
    for (value, msg) in [
        ("0.5", "at least 1"),
        ("-2", "at least 1"),
        ("two", "at least 1"),
        ("nan", "at least 1"),
        ("inf", "at least 1"),
        ("1e3", "at least 1"),
        ("", "at least 1"),
        ("99999999999999999999", "beyond the"),
    ] {
        // sleep_time 1: the first sleep of the last one overflows.
        let cfg = format!("[runner]\nbackoff_factor = {value}\nsleep_time = 1\n");
        let r = Test::new().config(&cfg).traced("a", 0).run();
        assert_eq!(r.code(), 78, "{value}\n{}", r.describe());
        r.stderr_has(msg);
        r.stderr_has("runner.cfg:7:");
        r.stderr_has(&format!("'{value}'"));
    }
}
