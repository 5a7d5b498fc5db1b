//! Trust as root: one chain per canonical task directory, a journal that
//! belongs to one chain, run-once markers that are never lost silently,
//! the safety rule followed through symlinks, a state directory nobody
//! else can steer, exit 74 for state I/O, `--status` by the lock, config
//! files that cannot hang, and a `--syslog` that never blocks.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const NOBODY: u32 = 65534;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).expect("chown");
}

/// The plan's state directory for TASKDIR spelled as `taskdir`.
fn planned_state_dir(t: &Test, taskdir: &str) -> String {
    let ran = t.raw_args_run(&["-c", "runner.cfg", "--dry-run", "--json", taskdir]);
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    let plan: Value = serde_json::from_str(&ran.stdout()).expect("plan json");
    plan["state_dir"].as_str().expect("state_dir").to_string()
}

#[test]
fn a_chain_is_its_canonical_task_directory() {
    // The default state directory (no state_dir configured).
    let t = Test::new().config_exact("[runner]\nsleep_time = 0\nretry_jitter = 0\n").traced("a", 0);
    std::fs::create_dir(t.path().join("x")).expect("mkdir");
    symlink(t.tasks_dir(), t.path().join("link")).expect("symlink");
    let plain = planned_state_dir(&t, "tasks.d");
    for spelling in ["tasks.d/", "./x/../tasks.d", "link", "link/"] {
        assert_eq!(planned_state_dir(&t, spelling), plain, "{spelling}");
    }
    // One set of run-once markers and one lock whatever the spelling.
    let t = Test::new()
        .config("[a]\nrun = once\n")
        .traced("a", 0)
        .task("b", "echo b >> \"$TRACE\"\n[ -e \"$TRACE.go\" ] || { touch \"$TRACE.waiting\"; sleep 30; }");
    symlink(t.tasks_dir(), t.path().join("link")).expect("symlink");
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    for spelling in ["tasks.d", "tasks.d/", "link/"] {
        let ran = t.raw_args_run(&["-c", "runner.cfg", "-n", "1", spelling]);
        assert_eq!(ran.code(), 0, "{}", ran.describe());
    }
    assert_eq!(std::fs::read_to_string(t.path().join("trace")).unwrap_or_default(), "a\nb\nb\nb\n");
    std::fs::remove_file(t.path().join("trace.go")).expect("rm");
    let mut first = t.spawn();
    assert!(eventually(20, || t.path().join("trace.waiting").exists()));
    let second = t.raw_args_run(&["-c", "runner.cfg", "-n", "1", "link/"]);
    assert_eq!(second.code(), 75, "{}", second.describe());
    first.signal("TERM");
    assert_eq!(first.wait(20), 143);
}

#[test]
fn a_journal_belongs_to_one_chain() {
    // Two chains share one state directory.
    let t = Test::new()
        .config("[10-once]\nrun = once\n")
        .traced("10-once", 0)
        .task("20-die", "echo die >> \"$TRACE\"\n[ -e \"$TRACE.go\" ] || kill -9 $PPID\nsleep 5")
        .file_mode("other.d/10-once", "#!/bin/sh\necho other-once >> \"$TRACE\"\n", 0o755)
        .file_mode("other.d/20-b", "#!/bin/sh\necho other-b >> \"$TRACE\"\n", 0o755);
    let killed = t.run_more();
    assert_eq!(killed.code(), -1, "runner was killed: {}", killed.describe());
    let other = t.path().join("other.d").display().to_string();
    let ran = t.raw_args_run(&["-c", "runner.cfg", "-n", "1", "--resume", &other]);
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    ran.stderr_has("of another task directory").stderr_lacks("resuming run");
    // The other chain's 10-once ran: markers are per task directory.
    assert_eq!(ran.trace(), ["10-once", "die", "other-once", "other-b"]);
    // The first chain's marker is still there.
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    let again = t.run_more();
    assert_eq!(again.code(), 0, "{}", again.describe());
    assert_eq!(again.trace().last().map(String::as_str), Some("die"));
    assert_eq!(again.trace().iter().filter(|l| *l == "10-once").count(), 1);
}

#[test]
fn run_once_markers_are_recovered_or_the_run_is_refused() {
    let t = Test::new().config("[a]\nrun = once\n").traced("a", 0).traced("b", 0);
    assert_eq!(t.run_more().code(), 0);
    let state = t.path().join("state/state.json");
    let markers = t.path().join("state/markers.json");
    assert!(markers.exists());
    // A journal that does not parse: recovered from the copy.
    std::fs::write(&state, "{\"version\": 2, \"trunc").expect("corrupt");
    let ran = t.run_more();
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    ran.stderr_has("recovered from").stderr_has("markers.json");
    assert_eq!(ran.trace(), ["a", "b", "b"]);
    // A copy that does not parse: rewritten from the journal.
    std::fs::write(&markers, "garbage").expect("corrupt");
    let ran = t.run_more();
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    assert_eq!(ran.trace(), ["a", "b", "b", "b"]);
    assert!(std::fs::read_to_string(&markers).unwrap_or_default().contains("\"a\""));
    // Neither loads: refuse with 74, naming both files and the way out.
    std::fs::write(&state, "{").expect("corrupt");
    std::fs::remove_file(&markers).expect("rm");
    let ran = t.run_more();
    assert_eq!(ran.code(), 74, "{}", ran.describe());
    ran.stderr_has(&state.display().to_string()).stderr_has(&markers.display().to_string()).stderr_has("mv ");
    assert_eq!(ran.stderr().lines().filter(|l| l.contains("error")).count(), 1, "{}", ran.describe());
    assert_eq!(ran.trace().len(), 4, "nothing ran");
    // Moving both aside, as it says, is the explicit way to rerun once-tasks.
    std::fs::rename(&state, t.path().join("state/state.json.bad")).expect("mv");
    let ran = t.run_more();
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    assert_eq!(ran.trace()[4..], ["a", "b"]);
}

#[test]
fn unsafe_symlinked_task_is_refused_as_root() {
    if !root_or_skip("unsafe_symlinked_task_is_refused_as_root") {
        return;
    }
    let t =
        Test::new().traced("halt.sh", 0).file_mode("shared/payload", "#!/bin/sh\necho payload >> \"$TRACE\"\n", 0o755);
    let shared = t.path().join("shared");
    symlink(shared.join("payload"), t.tasks_dir().join("10-x")).expect("symlink");
    chmod(&shared, 0o777);
    let ran = t.run_more_with(&["--check"]);
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    ran.stdout_has("insecure task").stdout_has(&format!("{}: directory", shared.display()));
    let ran = t.run_more();
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    assert!(ran.trace().is_empty());
    // Sticky, and the payload is root's: nobody else can replace the entry.
    chmod(&shared, 0o1777);
    assert_eq!(t.run_more().code(), 0);
    // Sticky, but the entry belongs to another user: refused.
    chown_nobody(&shared.join("payload"));
    let ran = t.run_more_with(&["--check"]);
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    ran.stdout_has("owned by uid 65534");
    // A symlink to a symlink: every hop is followed.
    std::os::unix::fs::chown(shared.join("payload"), Some(0), Some(0)).expect("chown");
    chmod(&shared, 0o755);
    let hop = t.path().join("hop");
    std::fs::create_dir(&hop).expect("mkdir");
    symlink(shared.join("payload"), hop.join("p")).expect("symlink");
    std::fs::remove_file(t.tasks_dir().join("10-x")).expect("rm");
    symlink(hop.join("p"), t.tasks_dir().join("10-x")).expect("symlink");
    assert_eq!(t.run_more_with(&["--check"]).code(), 0);
    chmod(&hop, 0o775);
    let ran = t.run_more_with(&["--check"]);
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    ran.stdout_has(&format!("{}: directory", hop.display()));
}

#[test]
fn unsafe_interpreter_and_hook_are_refused_as_root() {
    if !root_or_skip("unsafe_interpreter_and_hook_are_refused_as_root") {
        return;
    }
    let t = Test::new().traced("a", 0).traced("halt.sh", 0).file_mode(
        "bin/interp",
        "#!/bin/sh\nexec /bin/sh \"$@\"\n",
        0o755,
    );
    let interp = t.path().join("bin/interp");
    let t = t.config(&format!("[runner]\ninterpreter = {}\n", interp.display()));
    assert_eq!(t.run_more().code(), 0);
    chmod(&t.path().join("bin"), 0o777);
    let ran = t.run_more();
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    ran.stderr_has("insecure interpreter");
}

#[test]
fn a_state_dir_another_user_could_steer_is_refused_with_77() {
    if !root_or_skip("a_state_dir_another_user_could_steer_is_refused_with_77") {
        return;
    }
    let t = Test::new().traced("a", 0);
    let state = t.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::fs::create_dir(elsewhere.join("20260101T000000.000000Z-000000000000000a")).expect("mkdir");
    symlink(&victim, state.join("lock")).expect("symlink");
    symlink(&elsewhere, state.join("logs")).expect("symlink");
    chown_nobody(&state);
    let ran = t.run_more();
    assert_eq!(ran.code(), 77, "{}", ran.describe());
    ran.stderr_has(&state.display().to_string()).stderr_has("owned by uid 65534");
    assert!(ran.trace().is_empty());
    // Root's own directory with planted links: never followed.
    std::os::unix::fs::chown(&state, Some(0), Some(0)).expect("chown");
    let ran = t.run_more();
    assert_eq!(ran.code(), 74, "{}", ran.describe());
    assert_eq!(std::fs::read_to_string(&victim).unwrap_or_default(), "precious");
    std::fs::remove_file(state.join("lock")).expect("rm");
    let ran = t.run_more();
    assert_eq!(ran.code(), 0, "{}", ran.describe());
    ran.stderr_has("cannot create the log folder");
    assert!(elsewhere.join("20260101T000000.000000Z-000000000000000a").exists());
    // A parent directory writable by others: refused.
    let open = t.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let ran = t.run_more_with(&["--state-dir", &open.join("state").display().to_string()]);
    assert_eq!(ran.code(), 77, "{}", ran.describe());
}

#[test]
fn events_file_is_never_a_symlink_and_private() {
    let t = Test::new().traced("a", 0);
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    symlink(&victim, t.path().join("events.link")).expect("symlink");
    let ran = t.run_more_with(&["--events", "events.link"]);
    assert_ne!(ran.code(), 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap_or_default(), "precious");
    let ran = t.run_more_with(&["--events", "events.jsonl"]);
    assert_eq!(ran.code(), 0);
    let mode = std::fs::metadata(t.path().join("events.jsonl")).expect("events").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn state_io_failures_exit_74() {
    // state.json is a directory.
    let t = Test::new().traced("a", 0);
    std::fs::create_dir_all(t.path().join("state/state.json")).expect("mkdir");
    let ran = t.run_more();
    assert_eq!(ran.code(), 74, "{}", ran.describe());
    ran.stderr_has("state.json");
    assert!(ran.trace().is_empty());
    // The state dir cannot be created (a file is in the way).
    let t = Test::new().traced("a", 0).file_mode("blocker", "", 0o644);
    let ran = t.run_more_with(&["--state-dir", "blocker/state"]);
    assert_eq!(ran.code(), 74, "{}", ran.describe());
    ran.stderr_has("blocker/state").stderr_has("cannot create state directory");
    assert_eq!(ran.stderr().lines().filter(|l| l.contains("error")).count(), 1, "{}", ran.describe());
}

#[test]
fn status_tells_running_from_dead_by_the_lock() {
    let t = Test::new().traced("a", 0);
    assert_eq!(t.run_more().code(), 0);
    // A journal that says "running" with a pid that is alive but is not a
    // runner holding the lock (as after a reboot): interrupted.
    let path = t.path().join("state/state.json");
    let text = std::fs::read_to_string(&path).expect("journal");
    let edited = text.replace("\"status\":\"finished\"", "\"status\":\"running\"");
    let pid = std::process::id();
    let edited = regex_free_replace_pid(&edited, pid);
    std::fs::write(&path, edited).expect("edit");
    let st = t.run_more_with(&["--status"]);
    st.stdout_has("interrupted");
    let js = t.run_more_with(&["--status", "--json"]);
    let doc: Value = serde_json::from_str(&js.stdout()).expect("json");
    assert_eq!(doc["phase"], "interrupted");
}

/// Sets `"pid":N` in a journal's text.
fn regex_free_replace_pid(text: &str, pid: u32) -> String {
    let Some(start) = text.find("\"pid\":") else { return text.to_string() };
    let digits = text[start + 6..].chars().take_while(char::is_ascii_digit).count();
    format!("{}\"pid\":{pid}{}", &text[..start], &text[start + 6 + digits..])
}

#[test]
fn bad_config_files_are_refused_at_once() {
    let t = Test::new().traced("a", 0);
    let fifo = t.path().join("fifo.cfg");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()));
    std::fs::create_dir(t.path().join("dir.cfg")).expect("mkdir");
    let big = t.path().join("big.cfg");
    let f = std::fs::File::create(&big).expect("big");
    f.set_len(17 << 20).expect("set_len");
    for (cfg, why) in [
        ("/dev/zero", "not a regular file"),
        (fifo.to_str().unwrap_or(""), "not a regular file"),
        ("dir.cfg", "a directory"),
        ("big.cfg", "larger than 16 MiB"),
    ] {
        for mode in [&["-g", "a.b"][..], &["--check", "tasks.d"], &["-n", "1", "tasks.d"]] {
            let start = Instant::now();
            let mut args = vec!["-c", cfg];
            args.extend(mode);
            let ran = t.raw_args_run(&args);
            assert_eq!(ran.code(), 78, "{cfg} {mode:?}: {}", ran.describe());
            assert!(ran.stderr().contains(why) || ran.stdout().contains(why), "{cfg}: {}", ran.describe());
            assert!(start.elapsed() < Duration::from_secs(10), "{cfg} took {:?}", start.elapsed());
        }
    }
    // An include file that is a FIFO: the same.
    let t = Test::new().config("[runner]\ninclude_dir = conf.d\n").traced("a", 0);
    std::fs::create_dir(t.path().join("conf.d")).expect("mkdir");
    assert!(
        std::process::Command::new("mkfifo").arg(t.path().join("conf.d/x.cfg")).status().is_ok_and(|s| s.success())
    );
    let ran = t.run_more();
    assert_eq!(ran.code(), 78, "{}", ran.describe());
    ran.stderr_has("conf.d/x.cfg");
}

#[test]
fn nul_bytes_in_values_runner_execs_are_configuration_errors() {
    for (cfg, shown) in [
        ("[env]\nTOKEN = hunter\0two\n", "TOKEN"),
        ("[runner]\ninterpreter = /bin/sh\0-e\n", "interpreter"),
        ("[runner]\ntask_hook = /bin/true\0x\n", "task_hook"),
        ("[a]\ninterpreter = /bin/sh\0\n", "interpreter"),
        ("[DEFAULT]\nD = x\0y\n[env]\n", "'D'"),
    ] {
        let t = Test::new().config(cfg).traced("a", 0);
        let check = t.run_more_with(&["--check"]);
        assert_eq!(check.code(), 78, "{cfg:?}: {}", check.describe());
        check.stdout_has(shown).stdout_has("NUL");
        assert!(!check.stdout().contains("hunter"), "{}", check.describe());
        let ran = t.run_more();
        assert_eq!(ran.code(), 78, "{cfg:?}: {}", ran.describe());
        assert!(ran.trace().is_empty());
    }
}

#[test]
fn syslog_that_stopped_reading_never_blocks_runner() {
    let t = Test::new().task("a", "touch \"$TRACE.started\"\nsleep 30");
    let sock_path = t.path().join("syslog.sock");
    // A syslog reader that never reads.
    let _reader = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    let t = t.env("RUNNER_SYSLOG_SOCKET", sock_path.as_os_str()).args(["--syslog", "-v"]);
    // Fill the reader's queue before the chain even starts.
    let filler = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    filler.set_nonblocking(true).expect("nonblocking");
    while filler.send_to(b"fill", &sock_path).is_ok() {}
    let mut r = t.spawn();
    assert!(eventually(20, || t.path().join("trace.started").exists()), "the chain started");
    let sent = Instant::now();
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert!(sent.elapsed() < Duration::from_secs(5), "SIGTERM handled in {:?}", sent.elapsed());
    let err = std::fs::read_to_string(t.path().join("err")).unwrap_or_default();
    assert!(err.contains("dropping lines") && err.contains("line(s) dropped"), "{err}");
}
