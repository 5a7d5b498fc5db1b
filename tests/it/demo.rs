//! The shipped demo runs on a fresh machine: `runner -c runner.cfg -n 1
//! example-tasks.d` exits 0, the flaky task succeeds on its second try and
//! tasks read their config through `$RUNNER_CONFIG_CMD`.

use assert_cmd::Command;

#[test]
fn demo_runs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let state = tempfile::tempdir().expect("tempdir");
    let out = Command::cargo_bin("runner")
        .expect("binary")
        .current_dir(root)
        .env("XDG_STATE_HOME", state.path())
        .env("DEMO_STATE", state.path())
        .args(["-c", "runner.cfg", "-n", "1", "example-tasks.d"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("RETRY"), "the flaky task fails once\n{stderr}");
    assert!(stdout.contains("succeeded on try 2"), "{stdout}");
    assert!(stdout.contains("greeting from runner.cfg"), "{stdout}");
    if crate::harness::is_root() {
        crate::harness::remove_default_state(&std::path::Path::new(root).join("example-tasks.d"));
    }
}
