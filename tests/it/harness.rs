//! A builder for one runner invocation on a fresh temporary directory:
//! `Test::new().config(..).task(..).args(..).status(2)`.
//!
//! Every test gets `tasks.d/` and a `runner.cfg` that starts with
//! `sleep_time = 0` and `retry_jitter = 0`, and the environment variable
//! `TRACE` naming a file that tasks append to with `trace` (see [`TRACE`]).

#![allow(dead_code)]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;

/// Shell line that records the task's file name and try in `$TRACE`.
pub const TRACE: &str = r#"echo "$RUNNER_TASK" >> "$TRACE""#;

/// One scenario: a temporary directory, a config, arguments, and the
/// expectations stated before it runs ([`Test::expect`]).
#[must_use]
pub struct Test {
    pub tmp: tempfile::TempDir,
    pub config: String,
    args: Vec<OsString>,
    raw_args: Option<Vec<OsString>>,
    envs: Vec<(OsString, OsString)>,
    /// Exit code [`Test::run`] asserts, when stated.
    expect_code: Option<i32>,
    /// Text stderr must contain.
    expect_stderr: Vec<String>,
}

impl Test {
    pub fn new() -> Test {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("tasks.d")).expect("tasks.d");
        Test {
            tmp,
            config: "[runner]\nsleep_time = 0\nretry_jitter = 0\nstate_dir = state\n".into(),
            args: Vec::new(),
            raw_args: None,
            envs: Vec::new(),
            expect_code: None,
            expect_stderr: Vec::new(),
        }
    }

    /// States the exit code the run must end with.
    pub fn expect(mut self, code: i32) -> Test {
        self.expect_code = Some(code);
        self
    }

    /// States a text the run's stderr must contain.
    pub fn expect_stderr(mut self, text: &str) -> Test {
        self.expect_stderr.push(text.into());
        self
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn tasks_dir(&self) -> PathBuf {
        self.tmp.path().join("tasks.d")
    }

    pub fn config_path(&self) -> PathBuf {
        self.tmp.path().join("runner.cfg")
    }

    /// Appends INI text to the config (sections may repeat: they merge).
    pub fn config(mut self, text: &str) -> Test {
        self.config.push('\n');
        self.config.push_str(text);
        self
    }

    /// Replaces the whole config.
    pub fn config_exact(mut self, text: &str) -> Test {
        self.config = text.into();
        self
    }

    /// An executable `/bin/sh` task in `tasks.d`.
    pub fn task(self, file: &str, body: &str) -> Test {
        self.file_mode(&format!("tasks.d/{file}"), &format!("#!/bin/sh\n{body}\n"), 0o755)
    }

    /// A task that records itself in the trace and exits with `code`.
    pub fn traced(self, file: &str, code: i32) -> Test {
        self.task(file, &format!("{TRACE}\nexit {code}"))
    }

    /// A file relative to the temporary directory.
    pub fn file_mode(self, rel: &str, content: &str, mode: u32) -> Test {
        let p = self.tmp.path().join(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    /// Extra arguments, placed after `-c runner.cfg -n 1` (without `-n 1`
    /// when they set `-n`) and before TASKDIR.
    pub fn args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The whole argument list, instead of the defaults.
    pub fn raw_args<I, S>(mut self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.raw_args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<OsString>) -> Test {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn command(&self) -> Command {
        std::fs::write(self.config_path(), &self.config).expect("write config");
        let mut cmd = Command::cargo_bin("runner").expect("binary");
        cmd.current_dir(self.tmp.path());
        cmd.env("TRACE", self.tmp.path().join("trace"));
        cmd.env("XDG_STATE_HOME", self.tmp.path().join("xdg-state"));
        cmd.timeout(Duration::from_secs(60));
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        match &self.raw_args {
            Some(a) => {
                cmd.args(a);
            }
            None => {
                let times =
                    default_times(&self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>());
                cmd.arg("-c").arg(self.config_path()).args(times).args(&self.args).arg(self.tasks_dir());
            }
        }
        cmd
    }

    /// Starts runner in the background (stdout and stderr to files `out` and
    /// `err` in the temporary directory).
    pub fn spawn(&self) -> Running<'_> {
        self.spawn_command(self.command(), "")
    }

    /// Starts runner in the background with exactly `args` (stdout and
    /// stderr to files `out<tag>` and `err<tag>`).
    pub fn spawn_raw(&self, args: &[&str], tag: &str) -> Running<'_> {
        let base = self.command();
        let mut raw = Command::cargo_bin("runner").expect("binary");
        raw.args(args);
        for (k, v) in base.get_envs().filter_map(|(k, v)| Some((k, v?))) {
            raw.env(k, v);
        }
        self.spawn_command(raw, tag)
    }

    fn spawn_command(&self, cmd: Command, tag: &str) -> Running<'_> {
        let mut std_cmd = std::process::Command::new(cmd.get_program());
        std_cmd.args(cmd.get_args()).current_dir(self.tmp.path());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => std_cmd.env(k, v),
                None => std_cmd.env_remove(k),
            };
        }
        let out = std::fs::File::create(self.tmp.path().join(format!("out{tag}"))).expect("out");
        let err = std::fs::File::create(self.tmp.path().join(format!("err{tag}"))).expect("err");
        let child = std_cmd.stdout(out).stderr(err).spawn().expect("spawn runner");
        Running { child, _test: std::marker::PhantomData }
    }

    /// Runs runner, checks the stated expectations, and returns what it
    /// did.
    pub fn run(self) -> Ran {
        let output = self.command().output().expect("run runner");
        let ran = Ran { output, dir: self.tmp.path().to_path_buf(), _owner: None };
        if let Some(code) = self.expect_code {
            assert_eq!(ran.code(), code, "exit code\n{}", ran.describe());
        }
        for s in &self.expect_stderr {
            ran.stderr_has(s);
        }
        Ran { _owner: Some(self), ..ran }
    }

    /// Runs runner again on the same directory (default arguments plus
    /// `extra`; `-n 1` unless `extra` sets `-n`), keeping this `Test` for
    /// more runs.
    pub fn run_more_with(&self, extra: &[&str]) -> Ran {
        let mut given: Vec<String> = self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        given.extend(extra.iter().map(|s| s.to_string()));
        let times = default_times(&given);
        let mut args: Vec<OsString> = vec!["-c".into(), self.config_path().into_os_string()];
        args.extend(times.iter().map(OsString::from));
        args.extend(self.args.iter().cloned());
        args.extend(extra.iter().map(OsString::from));
        args.push(self.tasks_dir().into_os_string());
        self.rerun(args)
    }

    /// Runs runner again on the same directory with exactly `args` (and this
    /// test's environment).
    pub fn raw_args_run(&self, args: &[&str]) -> Ran {
        self.rerun(args.iter().map(OsString::from).collect())
    }

    fn rerun(&self, args: Vec<OsString>) -> Ran {
        let mut cmd = Command::cargo_bin("runner").expect("binary");
        std::fs::write(self.config_path(), &self.config).expect("write config");
        cmd.current_dir(self.tmp.path())
            .env("TRACE", self.tmp.path().join("trace"))
            .env("XDG_STATE_HOME", self.tmp.path().join("xdg-state"))
            .timeout(Duration::from_secs(60))
            .args(args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let output = cmd.output().expect("run runner");
        Ran { output, dir: self.tmp.path().to_path_buf(), _owner: None }
    }

    pub fn run_more(&self) -> Ran {
        self.run_more_with(&[])
    }

    /// Runs runner and asserts its exit code.
    pub fn status(self, code: i32) -> Ran {
        let ran = self.run();
        assert_eq!(ran.code(), code, "exit code\n{}", ran.describe());
        ran
    }
}

/// As root, a run without a configured state directory keeps its state
/// under /var/lib/runner: the test removes what its own chain left there.
impl Drop for Test {
    fn drop(&mut self) {
        if is_root() {
            remove_default_state(&self.tasks_dir());
        }
    }
}

/// Removes `/var/lib/runner/<chain>` for the task directory `dir`.
pub fn remove_default_state(dir: &Path) {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let state = Path::new("/var/lib/runner").join(runner::settings::chain_name(&canonical));
    let _ = std::fs::remove_dir_all(state);
}

/// A runner started in the background. It borrows its [`Test`], so a
/// temporary `Test` (whose drop deletes the directory runner works in)
/// cannot outlive the statement that spawned it: that is a compile error.
pub struct Running<'t> {
    pub child: std::process::Child,
    _test: std::marker::PhantomData<&'t Test>,
}

impl Running<'_> {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill").args(["-s", sig, &self.pid().to_string()]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -s {sig}");
    }

    /// Waits up to `secs` for runner to exit; its exit code.
    pub fn wait(&mut self, secs: u64) -> i32 {
        let end = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code().unwrap_or(-1);
            }
            if std::time::Instant::now() > end {
                let _ = self.child.kill();
                panic!("runner did not exit within {secs} s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of runner did, and the directory it ran in.
pub struct Ran {
    pub output: Output,
    dir: PathBuf,
    /// The scenario, when the run consumed it (its directory lives as long).
    _owner: Option<Test>,
}

impl Ran {
    /// Wraps the output of a command built with [`Test::command`].
    pub fn from_output(output: Output, test: Test) -> Ran {
        Ran { output, dir: test.tmp.path().to_path_buf(), _owner: Some(test) }
    }

    /// The test's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("runner.cfg")
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn describe(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout(), self.stderr())
    }
    /// Lines the tasks appended to `$TRACE`.
    pub fn trace(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("trace")).unwrap_or_default().lines().map(String::from).collect()
    }
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_default()
    }
    pub fn stdout_has(&self, s: &str) -> &Ran {
        assert!(self.stdout().contains(s), "stdout lacks {s:?}\n{}", self.describe());
        self
    }
    pub fn stderr_has(&self, s: &str) -> &Ran {
        assert!(self.stderr().contains(s), "stderr lacks {s:?}\n{}", self.describe());
        self
    }
    pub fn stderr_lacks(&self, s: &str) -> &Ran {
        assert!(!self.stderr().contains(s), "stderr has {s:?}\n{}", self.describe());
        self
    }
}

/// `-n 1` unless the arguments set `-n` or choose a mode in which it means
/// nothing (runner refuses flags that have no effect).
fn default_times(args: &[String]) -> &'static [&'static str] {
    let modes = ["-n", "--status", "--check", "--forget", "-g", "--get", "--plot"];
    if args.iter().any(|a| modes.contains(&a.as_str())) { &[] } else { &["-n", "1"] }
}

/// Whether the tests run as root (the safety rule and the default state
/// directory depend on it).
pub fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Whether a process with this pid is alive (and not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits up to `secs` for `f` to become true.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Whether a root-only test can run; says plainly in the test output when
/// it is skipped (CI runs as root).
/// Not root: the test's own checks are skipped (said plainly), and what
/// holds instead is checked — a runner that is not root runs files that
/// others can write, without a word.
pub fn root_or_skip(name: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {name} (needs root); checking instead that the rule does not apply to a non-root runner");
        let t = Test::new().traced("a", 0);
        for p in [t.tasks_dir().join("a"), t.tasks_dir()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let ran = t.run_more();
        assert_eq!(ran.code(), 0, "{}", ran.describe());
        ran.stderr_lacks("insecure");
        assert_eq!(ran.trace(), ["a"]);
    }
    is_root()
}

/// Waits until the file exists and holds a whole line; its text.
pub fn wait_for(path: &Path) -> String {
    assert!(
        eventually(20, || std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))),
        "{path:?} never written"
    );
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The pid a task wrote into `path`.
pub fn pid_in(path: &Path) -> i32 {
    wait_for(path).trim().parse().expect("pid")
}
