//! Task discovery: filters, non-executable files, odd names, empty dirs.

use std::os::unix::ffi::OsStrExt;

use crate::harness::*;

#[test]
fn filters_hidden_backup_packaging_directories_and_halt() {
    let mut t = Test::new().traced("a", 0).traced("halt.sh", 0);
    for skipped in [
        ".hidden",
        "b~",
        "c.dpkg-old",
        "d.dpkg-new",
        "e.dpkg-dist",
        "f.dpkg-tmp",
        "g.rpmsave",
        "h.rpmnew",
        "i.swp",
        "j.bak",
    ] {
        t = t.traced(skipped, 0);
    }
    std::fs::create_dir(t.tasks_dir().join("subdir")).expect("mkdir");
    let ran = t.status(0);
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn non_executable_skipped_with_warning() {
    let ran = Test::new().traced("a", 0).file_mode("tasks.d/notes", "#!/bin/sh\nexit 1\n", 0o644).status(0);
    ran.stderr_has("notes: not executable");
    assert_eq!(ran.trace(), ["a"]);
}

#[test]
fn non_executable_runs_when_an_interpreter_applies() {
    let body = format!("{TRACE}\n");
    // Global interpreter.
    let ran =
        Test::new().config("[runner]\ninterpreter = /bin/sh -e\n").file_mode("tasks.d/plain", &body, 0o644).status(0);
    assert_eq!(ran.trace(), ["plain"]);
    // Per-task interpreter.
    let ran = Test::new().config("[plain]\ninterpreter = /bin/sh\n").file_mode("tasks.d/plain", &body, 0o644).status(0);
    assert_eq!(ran.trace(), ["plain"]);
}

#[test]
fn interpreter_words_are_split_like_a_shell() {
    let ran = Test::new()
        .config("[runner]\ninterpreter = /bin/sh -c 'echo \"via $0 $1\"' sh\n")
        .file_mode("tasks.d/x", "", 0o644)
        .status(0);
    ran.stdout_has("[x] via sh ");
    ran.stdout_has("tasks.d/x");
}

#[test]
fn non_utf8_task_name_runs() {
    let t = Test::new();
    let name = std::ffi::OsStr::from_bytes(b"10-caf\xe9");
    let path = t.tasks_dir().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{TRACE}\n")).expect("write");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let ran = t.status(0);
    let trace = std::fs::read(ran.path().join("trace")).expect("trace");
    assert_eq!(trace, b"10-caf\xe9\n");
}

#[test]
fn empty_taskdir_exits_0() {
    Test::new().status(0).stderr_has("nothing to do");
    // Even when running forever.
    Test::new().raw_args(["-c", "runner.cfg", "tasks.d"]).status(0);
}

#[test]
fn symlinked_task_is_followed() {
    let t = Test::new().traced("real", 0);
    std::fs::create_dir(t.path().join("other")).expect("mkdir");
    std::fs::rename(t.tasks_dir().join("real"), t.path().join("other/real")).expect("mv");
    std::os::unix::fs::symlink(t.path().join("other/real"), t.tasks_dir().join("link")).expect("ln");
    let ran = t.status(0);
    assert_eq!(ran.trace(), ["link"]);
}
