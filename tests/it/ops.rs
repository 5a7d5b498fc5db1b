//! Operations (part of issue 15): `--list`, `--status` exit codes and
//! `--status --wait`, `--check --json`, an empty `halt_task`, and the
//! summary line every run ends with.

use serde_json::Value;

use crate::harness::*;

#[test]
fn list_prints_the_planned_files_in_order() {
    let ran = Test::new()
        .traced("10-b", 0)
        .traced("20-a", 0)
        .traced("30-c", 0)
        .file_mode("tasks.d/README", "not a task", 0o644)
        .config("[20-a]\ndepends_on = 30-c\n")
        .args(["--list"])
        .raw_args(["-c", "runner.cfg", "--list", "tasks.d"])
        .status(0);
    assert_eq!(ran.stdout(), "10-b\n30-c\n20-a\n");
    assert!(ran.trace().is_empty(), "nothing ran");
}

#[test]
fn status_exits_with_the_last_runs_code() {
    let t = Test::new().traced("a", 3);
    let st = t.raw_args_run(&["-c", "runner.cfg", "--status", "tasks.d"]);
    assert_eq!(st.code(), 0, "no run recorded: {}", st.describe());
    st.stdout_has("no run recorded");
    assert_eq!(t.run_more().code(), 3);
    let st = t.raw_args_run(&["-c", "runner.cfg", "--status", "tasks.d"]);
    assert_eq!(st.code(), 3, "{}", st.describe());
}

#[test]
fn status_wait_blocks_until_the_run_ends_and_returns_its_code() {
    let t =
        Test::new().task("a", "touch \"$TRACE.started\"\nwhile [ ! -e \"$TRACE.go\" ]; do sleep 0.02; done\nexit 3");
    let mut r = t.spawn();
    assert!(eventually(20, || t.path().join("trace.started").exists()));
    // A short timeout while it runs: 75.
    let st = t.raw_args_run(&["-c", "runner.cfg", "--status", "--wait", "--wait-timeout", "0.2", "tasks.d"]);
    assert_eq!(st.code(), 75, "{}", st.describe());
    // A waiter started while the task is held, and still waiting after a
    // second look says "running", ends only once the run has ended.
    let mut waiter = t.spawn_raw(&["-c", "runner.cfg", "--status", "--wait", "tasks.d"], "-waiter");
    t.raw_args_run(&["-c", "runner.cfg", "--status", "tasks.d"]).stdout_has("running");
    assert!(waiter.child.try_wait().expect("try_wait").is_none(), "the waiter returned while the run went on");
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    assert_eq!(waiter.wait(20), 3, "{}", std::fs::read_to_string(t.path().join("err-waiter")).unwrap_or_default());
    let said = std::fs::read_to_string(t.path().join("out-waiter")).unwrap_or_default();
    assert!(said.contains("finished, exit 3"), "{said}");
    assert_eq!(r.wait(20), 3);
}

#[test]
fn check_json_lists_diagnostics() {
    let t = Test::new().config("[runner]\nmax_tries = five\nmax_try = 3\n").traced("a", 0);
    let ran = t.raw_args_run(&["-c", "runner.cfg", "--check", "--json", "tasks.d"]);
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    let doc: Value = serde_json::from_str(&ran.stdout()).expect("json");
    assert_eq!(doc["errors"].as_array().map(Vec::len), Some(1));
    assert!(doc["errors"][0]["at"].as_str().is_some_and(|a| a.ends_with("runner.cfg:7")));
    assert!(
        doc["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|d| d["message"].as_str().is_some_and(|m| m.contains("max_try"))))
    );
    assert_eq!(doc["tasks"], 1);
}

#[test]
fn an_empty_halt_task_means_none() {
    let ran = Test::new().config("[runner]\nhalt_task =\n").traced("a", 2).status(2);
    ran.stderr_lacks("halt task does not exist").stderr_has("not halting");
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn every_run_ends_with_a_summary() {
    let flaky = format!("{TRACE}\n[ -f \"$TRACE.once\" ] && exit 0\ntouch \"$TRACE.once\"\nexit 1");
    let ran = Test::new().traced("a", 0).task("b", &flaky).args(["--events", "events.jsonl"]).status(0);
    ran.stderr_has("finished: 2 task(s) OK, 1 retry,").stderr_has("logs in");
    let events = ran.read("events.jsonl");
    let end: Value = serde_json::from_str(events.lines().last().unwrap_or("")).expect("run_end");
    assert_eq!(end["event"], "run_end");
    assert_eq!(end["tasks_ok"], 2);
    assert_eq!(end["retries"], 1);
    assert!(end["summary"].as_str().is_some_and(|s| s.starts_with("finished: 2 task(s) OK")));
}

#[test]
fn sd_notify_ready_and_status_lines() {
    let t = Test::new()
        .config("[runner]\nmax_tries = 2\n")
        .task("10-first", "echo \"sock=${NOTIFY_SOCKET:-unset}\" >> \"$TRACE\"")
        .task("20-second", "[ -f \"$TRACE.once\" ] && exit 0\ntouch \"$TRACE.once\"\nexit 1");
    let sock_path = t.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let ran = t.env("NOTIFY_SOCKET", sock_path.as_os_str()).run();
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let all = messages.join("");
    assert!(messages[0].contains("READY=1"), "{messages:?}");
    for want in [
        "STATUS=task 1/2 first (try 1 of 2)",
        "STATUS=task 2/2 second (try 1 of 2)",
        "STATUS=sleeping 0 s before try 2 of 20-second",
        "STATUS=task 2/2 second (try 2 of 2)",
        "STATUS=finished: 2 task(s) OK, 1 retry",
    ] {
        assert!(all.contains(want), "{want} not in {messages:?}");
    }
    assert_eq!(ran.trace(), ["sock=unset"], "tasks do not inherit NOTIFY_SOCKET");
}

#[test]
fn status_never_warns_about_the_halt_task() {
    let t = Test::new().traced("a", 0);
    assert_eq!(t.run_more().code(), 0);
    let st = t.raw_args_run(&["-c", "runner.cfg", "--status", "tasks.d"]);
    assert_eq!(st.code(), 0);
    st.stderr_lacks("halt task");
    assert!(st.stderr().is_empty(), "{}", st.describe());
}

#[test]
fn progress_shows_where_the_chain_is() {
    let flaky = format!("{TRACE}\n[ -f \"$TRACE.once\" ] && exit 0\ntouch \"$TRACE.once\"\nexit 1");
    let ran = Test::new().traced("a", 0).task("b", &flaky).status(0);
    ran.stderr_has("2/2 b: RETRY (exit 1 after").stderr_lacks("task 1/2");
    let ran = Test::new().traced("a", 0).traced("b", 0).args(["-v"]).status(0);
    ran.stderr_has("task 1/2 a (try 1 of 5)").stderr_has("task 2/2 b (try 1 of 5)");
}

/// The entries of the journal's native protocol in one datagram.
fn journal_fields(datagram: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    let mut rest = datagram;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            rest = &rest[nl + 1..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().expect("length")) as usize;
            let value = &rest[nl + 9..nl + 9 + len];
            fields.insert(name, String::from_utf8_lossy(value).into_owned());
            rest = &rest[nl + 9 + len + 1..];
        }
    }
    fields
}

#[test]
fn under_journald_lines_go_natively_with_fields() {
    use std::os::unix::fs::MetadataExt;
    let t = Test::new().task("10-greet", "echo hello\necho oops >&2");
    let journal = std::os::unix::net::UnixDatagram::bind(t.path().join("journal.sock")).expect("bind");
    journal.set_nonblocking(true).expect("nonblocking");
    let syslog = std::os::unix::net::UnixDatagram::bind(t.path().join("syslog.sock")).expect("bind");
    syslog.set_nonblocking(true).expect("nonblocking");
    // stderr is the journal: JOURNAL_STREAM names it.
    let err = std::fs::File::create(t.path().join("err")).expect("err");
    let meta = err.metadata().expect("meta");
    let (jpath, spath) = (t_path(&t, "journal.sock"), t_path(&t, "syslog.sock"));
    let t = t
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUNNER_JOURNAL_SOCKET", jpath)
        .env("RUNNER_SYSLOG_SOCKET", spath)
        .args(["--syslog"]);
    let mut r = t.spawn();
    assert_eq!(r.wait(20), 0);
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = journal.recv(&mut buf) {
        entries.push(journal_fields(&buf[..n]));
    }
    let hello = entries.iter().find(|e| e["MESSAGE"] == "[greet] hello").expect("task line");
    assert_eq!(hello["RUNNER_TASK"], "10-greet");
    assert_eq!(hello["RUNNER_TRY"], "1");
    assert_eq!(hello["RUNNER_ITERATION"], "1");
    assert!(!hello["RUNNER_RUN_ID"].is_empty());
    assert_eq!(hello["PRIORITY"], "6");
    let oops = entries.iter().find(|e| e["MESSAGE"] == "[greet] oops").expect("stderr line");
    assert_eq!(oops["PRIORITY"], "4");
    let summary = entries.iter().find(|e| e["MESSAGE"].starts_with("runner: finished:")).expect("summary");
    assert_eq!(summary["PRIORITY"], "6");
    assert_eq!(summary["RUNNER_RUN_ID"], hello["RUNNER_RUN_ID"], "runner's own lines carry the run's fields");
    assert!(!summary.contains_key("RUNNER_TASK"));
    // Not twice: nothing on stdout or stderr, nothing to syslog.
    assert_eq!(std::fs::read_to_string(t.path().join("out")).unwrap_or_default(), "");
    assert_eq!(std::fs::read_to_string(t.path().join("err")).unwrap_or_default(), "");
    assert!(syslog.recv(&mut buf).is_err(), "syslog got a copy");
}

fn t_path(t: &Test, name: &str) -> std::ffi::OsString {
    t.path().join(name).into_os_string()
}

#[test]
fn under_journald_without_its_socket_lines_carry_priority_prefixes() {
    use std::os::unix::fs::MetadataExt;
    let t = Test::new().task("10-greet", "echo hello");
    let err = std::fs::File::create(t.path().join("err")).expect("err");
    let meta = err.metadata().expect("meta");
    let missing = t_path(&t, "no-such.sock");
    let t = t.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino())).env("RUNNER_JOURNAL_SOCKET", missing);
    let mut r = t.spawn();
    assert_eq!(r.wait(20), 0);
    let err = std::fs::read_to_string(t.path().join("err")).unwrap_or_default();
    assert!(err.lines().all(|l| l.starts_with("<4>runner: ") || l.starts_with("<6>runner: ")), "{err}");
    assert!(err.contains("<6>runner: finished:"), "{err}");
    let out = std::fs::read_to_string(t.path().join("out")).unwrap_or_default();
    assert_eq!(out, "<6>[greet] hello\n");
}

#[test]
fn status_needs_no_taskdir_when_the_config_names_it() {
    let t = Test::new().config("[runner]\ntask_dir = tasks.d\n").traced("a", 0);
    assert_eq!(t.run_more().code(), 0);
    let st = t.raw_args_run(&["-c", "runner.cfg", "--status"]);
    assert_eq!(st.code(), 0, "{}", st.describe());
    st.stdout_has("finished, exit 0");
    assert!(st.stderr().is_empty(), "{}", st.describe());
}
