//! Signals to runner: SIGTERM, SIGINT and SIGHUP stop the chain, the task's
//! group dies, the post hook sees CANCELLED, no halt task, exit 128+N.

use crate::harness::*;

const RECORD_POST: &str = "post_task_hook = /bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE.hook\"' hook\n";

#[test]
fn sigterm_stops_task_and_grandchild_runs_post_hook_exits_143() {
    let t = Test::new()
        .config(RECORD_POST)
        .task("a", "sleep 60 &\necho $! > \"$TRACE.gc\"\necho $$ > \"$TRACE.pid\"\nwait")
        .traced("b", 0)
        .traced("halt.sh", 0);
    let mut r = t.spawn();
    let gc = pid_in(&t.path().join("trace.gc"));
    let task = pid_in(&t.path().join("trace.pid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert!(eventually(5, || !alive(gc) && !alive(task)), "task {task} or grandchild {gc} survived");
    let hook = std::fs::read_to_string(t.path().join("trace.hook")).unwrap_or_default();
    let stats: serde_json::Value = serde_json::from_str(hook.lines().last().unwrap_or("")).expect("hook JSON");
    assert_eq!(stats["result"], "CANCELLED");
    // Neither the next task nor the halt task ran.
    assert!(!t.path().join("trace").exists());
}

#[test]
fn sigint_exits_130_and_sighup_129() {
    for (sig, code) in [("INT", 130), ("HUP", 129)] {
        let t = Test::new().task("a", "echo $$ > \"$TRACE.pid\"\nexec sleep 60");
        let mut r = t.spawn();
        let task = pid_in(&t.path().join("trace.pid"));
        r.signal(sig);
        assert_eq!(r.wait(20), code, "{sig}");
        assert!(eventually(5, || !alive(task)));
    }
}

#[test]
fn term_ignoring_task_gets_sigkill_after_kill_grace() {
    let t = Test::new()
        .config("[runner]\nkill_grace = 0.3\n")
        .task("a", "trap '' TERM\necho $$ > \"$TRACE.pid\"\nwhile :; do sleep 0.05; done");
    let mut r = t.spawn();
    let task = pid_in(&t.path().join("trace.pid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    assert!(eventually(5, || !alive(task)));
}

#[test]
fn second_sigint_kills_at_once() {
    // kill_grace is far beyond the test's bound: only the second SIGINT can
    // end the stubborn task in time.
    let t = Test::new()
        .config("[runner]\nkill_grace = 3600\n")
        .task("a", "trap '' TERM INT\necho $$ > \"$TRACE.pid\"\nwhile :; do sleep 0.05; done");
    let mut r = t.spawn();
    let task = pid_in(&t.path().join("trace.pid"));
    r.signal("INT");
    let err = t.path().join("err");
    assert!(eventually(20, || std::fs::read_to_string(&err).is_ok_and(|s| s.contains("received signal 2"))));
    assert!(alive(task), "the first SIGINT only sends SIGTERM");
    r.signal("INT");
    assert_eq!(r.wait(20), 130);
    assert!(eventually(5, || !alive(task)));
}

#[test]
fn backoff_sleep_wakes_at_once() {
    // The backoff would be 1000 s or more.
    let t =
        Test::new().config("[runner]\nsleep_time = 1000\nmax_tries = 3\n").task("a", "echo x >> \"$TRACE\"\nexit 1");
    let mut r = t.spawn();
    wait_for(&t.path().join("trace"));
    assert!(eventually(20, || std::fs::read_to_string(t.path().join("err")).is_ok_and(|s| s.contains("sleeping"))));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
}

#[test]
fn signal_ignored_at_start_stays_ignored() {
    let t = Test::new().task("a", "echo started > \"$TRACE.started\"\nsleep 0.5\necho done >> \"$TRACE\"");
    let cmd = t.command();
    let mut args: Vec<String> = vec![cmd.get_program().to_string_lossy().into_owned()];
    args.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let script = format!("trap '' TERM; exec {}", args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" "));
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .current_dir(t.path())
        .env("TRACE", t.path().join("trace"))
        .spawn()
        .expect("spawn");
    wait_for(&t.path().join("trace.started"));
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(t.path().join("trace")).unwrap_or_default(), "done\n");
}
