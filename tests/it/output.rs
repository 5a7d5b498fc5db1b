//! Task output: prefixed lines on the right stream, raw pass-through,
//! unterminated lines, leaked handles.

use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn lines_are_prefixed_with_the_task_name_on_their_stream() {
    let ran = Test::new().task("10-app.sh", "echo out1\necho err1 >&2\necho out2").status(0);
    assert!(ran.stdout().contains("[app] out1\n[app] out2\n"), "{}", ran.describe());
    ran.stderr_has("[app] err1\n");
    assert!(!ran.stdout().contains("err1"));
}

#[test]
fn last_line_without_newline_passes_through() {
    let ran = Test::new().task("a", "printf 'no newline'").traced("b", 0).task("c", "echo next").status(0);
    ran.stdout_has("[a] no newline\n[c] next\n");
}

#[test]
fn raw_output_is_byte_exact() {
    let ran =
        Test::new().task("a", r"printf 'bin\000ary \377\376 x\nsecond\r\nno newline'").args(["--raw-output"]).status(0);
    assert_eq!(ran.output.stdout, b"bin\0ary \xff\xfe x\nsecond\r\nno newline");
}

#[test]
fn binary_output_passes_prefixed() {
    let ran = Test::new().task("a", r"printf 'x\000\377y\n'").status(0);
    assert_eq!(ran.output.stdout, b"[a] x\0\xffy\n");
}

#[test]
fn hook_and_halt_output_are_prefixed() {
    let ran = Test::new()
        .config("[runner]\npre_task_hook = /bin/echo from-hook\n")
        .task("a", "exit 2")
        .task("halt.sh", "echo from-halt")
        .status(2);
    ran.stdout_has("[pre_task_hook a] from-hook ");
    ran.stdout_has("[halt] from-halt\n");
}

#[test]
fn leaked_output_handle_does_not_hang_the_chain() {
    let t = Test::new().task("a", "sleep 60 &\necho $! > \"$TRACE.pid\"\necho started").task("b", "echo b ran");
    let start = Instant::now();
    let ran = t.status(0);
    // The leftover holds stdout for 60 s; runner waits only its short drain.
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    ran.stdout_has("[b] b ran");
    ran.stderr_has("a: leaked its output");
    if let Ok(pid) = ran.read("trace.pid").trim().parse::<i32>() {
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    }
}

#[test]
fn a_task_that_closes_its_output_early_does_not_make_runner_spin() {
    // With stdout and stderr closed, a poll loop that still watched them
    // would wake at once, forever, until the task exits.
    let t = Test::new()
        .task("a", "exec >&- 2>&-\necho x > \"$TRACE.started\"\nsleep 0.7\necho x > \"$TRACE.slept\"\nsleep 0.3");
    let mut r = t.spawn();
    assert!(eventually(20, || t.path().join("trace.slept").exists()));
    let ticks = cpu_ticks(r.pid());
    assert_eq!(r.wait(20), 0);
    // 100 ticks a second: a spinning runner would have used about 70.
    assert!(ticks < 30, "runner used {ticks} clock ticks of CPU while its task slept");
}

/// utime + stime of a live process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15.
    let get = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(14) + get(15)
}

#[test]
fn an_unfinished_line_shows_at_once() {
    // The task waits (up to 20 s) until the test has seen its unfinished
    // line, so the line can only be seen if runner passed it on at once.
    let t = Test::new().task(
        "a",
        "printf 'waiting...'\nfor i in $(seq 200); do [ -e \"$TRACE.go\" ] && break; sleep 0.1; done\necho ' done'",
    );
    let mut r = t.spawn();
    let out = t.path().join("out");
    let seen = eventually(10, || std::fs::read_to_string(&out).is_ok_and(|s| s.contains("[a] waiting...")));
    std::fs::write(t.path().join("trace.go"), "").expect("go");
    assert!(seen, "the unfinished line was held back");
    assert_eq!(r.wait(30), 0);
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "[a] waiting... done\n");
}
