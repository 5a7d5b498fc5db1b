//! Reboot and continue (`reboot_now_exit`, `reboot_later_exit`, the reboot
//! task, `--resume` in another boot, `max_reboots`) and the whole run's
//! `deadline`. `RUNNER_BOOT_ID_FILE` stands in for the boot id: writing
//! another id into it is a reboot.

use crate::harness::*;

const CODES: &str = "[runner]\nreboot_now_exit = 35\nreboot_later_exit = 37\nhalt_task = halt.sh\n";

/// A chain of `a` (exits `code` the first time, then 0), `b`, and the
/// reboot and halt tasks, which record themselves; boot id `boot-1`.
fn chain(code: i32) -> Test {
    let t = Test::new()
        .config(CODES)
        .task("a", &format!("{TRACE}\n[ -e a.done ] && exit 0\ntouch a.done\nexit {code}"))
        .task("b", &format!("{TRACE}\necho \"$RUNNER_RUN_ID\" >> run-ids"))
        .task("reboot.sh", "echo reboot >> \"$TRACE\"")
        .task("halt.sh", "echo halt >> \"$TRACE\"")
        .file_mode("boot-id", "boot-1\n", 0o644);
    let id = t.path().join("boot-id");
    t.env("RUNNER_BOOT_ID_FILE", id.as_os_str())
}

fn reboot(t: &Test, id: &str) {
    std::fs::write(t.path().join("boot-id"), format!("{id}\n")).expect("boot id");
}

fn resume(t: &Test) -> Ran {
    t.run_more_with(&["--resume"])
}

fn trace(t: &Test) -> Vec<String> {
    std::fs::read_to_string(t.path().join("trace")).unwrap_or_default().lines().map(String::from).collect()
}

#[test]
fn reboot_now_runs_the_reboot_task_and_resume_in_another_boot_goes_on() {
    let t = chain(35);
    let r = resume(&t);
    assert_eq!(r.code(), 4, "{}", r.describe());
    r.stderr_has("a: asked for a reboot before the next task");
    assert_eq!(trace(&t), ["a", "reboot"]);
    let st = t.run_more_with(&["--status"]);
    assert_eq!(st.code(), 4, "{}", st.describe());
    st.stdout_has("waiting for reboot requested by a at 20");
    st.stdout_has("(boot id boot-1)");
    let json: serde_json::Value =
        serde_json::from_str(&t.run_more_with(&["--status", "--json"]).stdout()).expect("status json");
    assert_eq!(json["phase"], "waiting_for_reboot");
    assert_eq!(json["reboot"]["task"], "a");
    assert_eq!(json["reboot"]["boot_id"], "boot-1");
    let run_id = json["run_id"].as_str().unwrap_or_default().to_string();
    reboot(&t, "boot-2");
    let r = resume(&t);
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.stderr_has("rebooted as a asked");
    // The same run goes on at the task after a; a does not run again.
    assert_eq!(trace(&t), ["a", "reboot", "b"]);
    assert_eq!(std::fs::read_to_string(t.path().join("run-ids")).unwrap_or_default().trim(), run_id);
    let st = t.run_more_with(&["--status"]);
    assert_eq!(st.code(), 0);
    st.stdout_has("reboots:      1 in this run");
}

#[test]
fn reboot_later_waits_until_the_chain_ends() {
    let t = chain(37);
    let r = resume(&t);
    assert_eq!(r.code(), 4, "{}", r.describe());
    assert_eq!(trace(&t), ["a", "b", "reboot"]);
    reboot(&t, "boot-2");
    let r = resume(&t);
    assert_eq!(r.code(), 0, "{}", r.describe());
    assert_eq!(trace(&t), ["a", "b", "reboot"], "nothing runs again after the last task");
    assert_eq!(t.run_more_with(&["--status"]).code(), 0);
}

#[test]
fn reboot_later_in_a_bounded_loop_goes_on_with_the_next_iteration() {
    let t = chain(37).task("a", &format!("{TRACE}\nexit 37"));
    let more = |t: &Test| t.run_more_with(&["--resume", "-n", "2"]);
    assert_eq!(more(&t).code(), 4);
    reboot(&t, "boot-2");
    assert_eq!(more(&t).code(), 4);
    reboot(&t, "boot-3");
    assert_eq!(more(&t).code(), 0);
    assert_eq!(trace(&t), ["a", "b", "reboot", "a", "b", "reboot"]);
}

#[test]
fn without_a_reboot_in_between_the_next_task_never_runs_in_that_boot() {
    let t = chain(35).config("[runner]\nmax_tries = 3\n");
    assert_eq!(resume(&t).code(), 4);
    // Same boot id: the reboot task again, never b.
    let r = resume(&t);
    assert_eq!(r.code(), 4, "{}", r.describe());
    r.stderr_has("the reboot a asked for did not happen; running the reboot task again (try 2 of 3)");
    assert_eq!(resume(&t).code(), 4);
    let r = resume(&t);
    assert_eq!(r.code(), 1, "{}", r.describe());
    r.stderr_has("after the reboot task ran 3 time(s) (max_tries 3); giving up");
    assert_eq!(trace(&t), ["a", "reboot", "reboot", "reboot", "halt"]);
    let st = t.run_more_with(&["--status"]);
    assert_eq!(st.code(), 1);
    st.stdout_has("reason:       reboot_failed");
}

#[test]
fn max_reboots_cuts_a_reboot_loop() {
    let t = chain(35).config("[runner]\nmax_reboots = 1\n").task("a", &format!("{TRACE}\nexit 35"));
    let more = |t: &Test| t.run_more_with(&["--resume", "-n", "3", "--events", "events"]);
    assert_eq!(more(&t).code(), 4);
    reboot(&t, "boot-2");
    let r = more(&t);
    assert_eq!(r.code(), 1, "{}", r.describe());
    r.stderr_has("a: asked for a reboot, but this run already went on after max_reboots (1) reboots; giving up");
    assert_eq!(trace(&t), ["a", "reboot", "b", "a", "halt"]);
    let events = std::fs::read_to_string(t.path().join("events")).expect("events");
    let end = events.lines().rfind(|l| l.contains("\"run_end\"")).expect("run_end");
    assert!(end.contains("\"reason\":\"max_reboots\""), "{end}");
    assert!(events.contains("\"event\":\"reboot_resumed\""), "{events}");
}

#[test]
fn without_a_reboot_task_runner_says_so_and_exits_4() {
    let t = chain(35);
    std::fs::remove_file(t.tasks_dir().join("reboot.sh")).expect("rm");
    let r = resume(&t);
    assert_eq!(r.code(), 4, "{}", r.describe());
    r.stderr_has("reboot task does not exist: not rebooting; exit 4 so that a wrapper reboots");
    let t = chain(35).config("[runner]\nreboot_task =\n");
    let r = resume(&t);
    assert_eq!(r.code(), 4, "{}", r.describe());
    r.stderr_has("no reboot task ([runner] reboot_task is empty)");
    // It is never part of the chain.
    let t = chain(0);
    assert_eq!(resume(&t).code(), 0);
    assert_eq!(trace(&t), ["a", "b"]);
}

#[test]
fn a_reboot_task_killed_with_runner_runs_again_on_resume() {
    let t = chain(35).task("reboot.sh", "echo reboot >> \"$TRACE\"\necho $$ > reboot.pid\nexec sleep 30");
    let mut r = t.spawn_raw(
        &["-c", &t.config_path().to_string_lossy(), "-n", "1", "--resume", &t.tasks_dir().to_string_lossy()],
        "",
    );
    pid_in(&t.path().join("reboot.pid"));
    r.signal("KILL");
    r.wait(20);
    drop(r);
    // The wait was recorded before the reboot task started.
    let st = t.run_more_with(&["--status"]);
    assert_eq!(st.code(), 4, "{}", st.describe());
    let t = t.task("reboot.sh", "echo reboot >> \"$TRACE\"");
    let again = resume(&t);
    assert_eq!(again.code(), 4, "{}", again.describe());
    assert_eq!(trace(&t), ["a", "reboot", "reboot"]);
    reboot(&t, "boot-2");
    assert_eq!(resume(&t).code(), 0);
    assert_eq!(trace(&t), ["a", "reboot", "reboot", "b"]);
}

#[test]
fn the_request_is_in_the_hook_stats_and_events() {
    let t = chain(35).config("[runner]\npost_task_hook = sh -c 'echo \"$1\" >> hook' hook\n");
    assert_eq!(t.run_more_with(&["--resume", "--events", "events"]).code(), 4);
    let hook = std::fs::read_to_string(t.path().join("hook")).expect("hook");
    assert!(hook.contains("\"result\": \"OK\"") && hook.contains("\"reboot\": \"now\""), "{hook}");
    let events = std::fs::read_to_string(t.path().join("events")).expect("events");
    assert!(events.contains("\"event\":\"reboot_requested\",") && events.contains("\"when\":\"now\""), "{events}");
    assert!(events.contains("\"event\":\"reboot_task\""), "{events}");
}

#[test]
fn reboot_codes_are_plain_failures_until_configured() {
    let t = Test::new().config("[runner]\nmax_tries = 2\nhalt_task =\n").traced("a", 35);
    let r = t.run();
    assert_eq!(r.code(), 1, "{}", r.describe());
    assert_eq!(r.trace(), ["a", "a"]);
}

#[test]
fn a_task_section_sets_its_own_reboot_codes() {
    let t = chain(36).config("[a]\nreboot_now_exit = 36\n");
    assert_eq!(resume(&t).code(), 4);
    assert_eq!(trace(&t), ["a", "reboot"]);
}

#[test]
fn bad_reboot_codes_are_configuration_errors() {
    for (cfg, msg) in [
        ("[runner]\nreboot_now_exit = 0\n", "other than 2 and 3"),
        ("[runner]\nreboot_now_exit = 2\n", "other than 2 and 3"),
        ("[runner]\nreboot_later_exit = 3\n", "other than 2 and 3"),
        ("[runner]\nreboot_later_exit = 256\n", "from 1 to 255"),
        ("[runner]\nreboot_now_exit = soon\n", "from 1 to 255"),
        ("[runner]\nreboot_now_exit = 35\nreboot_later_exit = 35\n", "must differ"),
        ("[runner]\nreboot_now_exit = 35\n[a]\nreboot_later_exit = 35\n", "must differ"),
        ("[runner]\nmax_reboots = -1\n", "max_reboots"),
        ("[runner]\ndeadline = soon\n", "deadline"),
        ("[runner]\ndeadline_counts_reboots = maybe\n", "true or false"),
    ] {
        let r = Test::new().config(cfg).traced("a", 0).run();
        assert_eq!(r.code(), 78, "{cfg}\n{}", r.describe());
        r.stderr_has(msg);
        r.stderr_has("runner.cfg:");
        assert!(r.trace().is_empty());
    }
}

#[test]
fn once_per_boot_uses_the_same_boot_id_source() {
    let t = chain(0).config("[b]\nrun = once-per-boot\n");
    assert_eq!(resume(&t).code(), 0);
    assert_eq!(resume(&t).code(), 0);
    assert_eq!(trace(&t), ["a", "b", "a"]);
    reboot(&t, "boot-2");
    assert_eq!(resume(&t).code(), 0);
    assert_eq!(trace(&t), ["a", "b", "a", "a", "b"]);
}

#[test]
fn the_deadline_stops_a_running_task_and_the_run_gives_up() {
    let t = Test::new()
        .config("[runner]\ndeadline = 0.5\nkill_grace = 0.2\nhalt_task = halt.sh\n")
        .task("slow", &format!("{TRACE}\nexec sleep 30"))
        .traced("zz-never", 0)
        .task("halt.sh", "echo halt >> \"$TRACE\"");
    let started = std::time::Instant::now();
    let r = t.run_more_with(&["--events", "events"]);
    assert_eq!(r.code(), 1, "{}", r.describe());
    assert!(started.elapsed().as_secs() < 20, "the task ran past the deadline");
    r.stderr_has("the run's deadline (0.5 s) passed; giving up");
    assert_eq!(r.trace(), ["slow", "halt"]);
    let st = t.run_more_with(&["--status"]);
    st.stdout_has("reason:       deadline");
    let events = std::fs::read_to_string(t.path().join("events")).expect("events");
    assert!(events.contains("\"event\":\"halt_start\"") && events.contains("\"reason\":\"deadline\""), "{events}");
}

#[test]
fn the_deadline_cuts_a_backoff_sleep_short() {
    let t = Test::new().config("[runner]\ndeadline = 0.5\nsleep_time = 60\nhalt_task =\n").traced("fails", 1);
    let started = std::time::Instant::now();
    let r = t.run();
    assert_eq!(r.code(), 1, "{}", r.describe());
    assert!(started.elapsed().as_secs() < 20, "slept past the deadline");
    r.stderr_has("the run's deadline (0.5 s) passed; giving up");
    assert_eq!(r.trace(), ["fails"]);
}

#[test]
fn time_waiting_for_a_reboot_counts_only_when_configured() {
    for (counts, code) in [("false", 0), ("true", 1)] {
        let t = chain(35).config(&format!("[runner]\ndeadline = 1\ndeadline_counts_reboots = {counts}\n"));
        assert_eq!(resume(&t).code(), 4);
        std::thread::sleep(std::time::Duration::from_millis(1300));
        reboot(&t, "boot-2");
        let r = resume(&t);
        assert_eq!(r.code(), code, "deadline_counts_reboots = {counts}\n{}", r.describe());
    }
}

#[test]
fn the_reboots_sigterm_during_the_reboot_task_keeps_the_run_waiting() {
    let t = chain(35).task("reboot.sh", "echo reboot >> \"$TRACE\"\necho $$ > reboot.pid\nexec sleep 30");
    let cfg = t.config_path().to_string_lossy().into_owned();
    let dir = t.tasks_dir().to_string_lossy().into_owned();
    let mut r = t.spawn_raw(&["-c", &cfg, "-n", "1", "--resume", &dir], "");
    pid_in(&t.path().join("reboot.pid"));
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    let st = t.run_more_with(&["--status"]);
    assert_eq!(st.code(), 4, "{}", st.describe());
    st.stdout_has("waiting for reboot requested by a");
    reboot(&t, "boot-2");
    assert_eq!(resume(&t).code(), 0);
    assert_eq!(trace(&t), ["a", "reboot", "b"]);
}
