//! `run = on-change`: a task's fingerprint and the decision it leads to.
//!
//! A fingerprint is one BLAKE3 digest per part — the task file's bytes,
//! the interpreter, the effective settings, the task's own section keys,
//! `[env]`, and each declared input (a file, a directory, a glob and each
//! file it matches, `env:NAME`, `cmd:COMMAND`'s output) — and one digest
//! over them all. [`take`] reads the inputs (and runs the `cmd:` ones);
//! [`decide`] compares with the fingerprint of the task's last OK and says
//! why it runs or is skipped, in words a person reads in `--dry-run` and
//! `-v`. This module reads; it never writes (the journal records).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{os, signals};
use crate::settings::config::{Input, Limits};
use crate::settings::{Planned, Settings};
use crate::state::Fingerprint;

/// A part whose input could not be read: the task runs and nothing is
/// recorded (so it runs again until the input reads).
const UNREADABLE: &str = "unreadable";

/// A fingerprint and the inputs that could not be read.
pub struct Taken {
    pub fp: Fingerprint,
    /// One line per input that could not be read or whose command failed.
    pub problems: Vec<String>,
}

/// Whether a task runs, and why (`run: never succeeded`,
/// `skip: unchanged since …`).
pub struct Decision {
    pub run: bool,
    pub why: String,
}

/// What the fingerprint of a task needs besides the task: its path, the
/// environment `[env]` adds, and where `cmd:` inputs start.
struct Context<'a> {
    path: &'a Path,
    env: &'a [(OsString, OsString)],
    config_dir: &'a Path,
}

/// Takes task `p`'s fingerprint now (the chain, and `--dry-run`).
pub fn take(p: &Planned, opts: &Settings) -> Taken {
    let path = p.task.path(&opts.task_dir);
    let cx = &Context { path: &path, env: &opts.env, config_dir: opts.config_dir() };
    let mut t = Taking { parts: BTreeMap::new(), problems: Vec::new() };
    let c = &p.config;
    t.file("task file", cx.path);
    let interp = c.limits.interpreter.value.as_ref().map(|w| w.join("\0")).unwrap_or_default();
    t.text("interpreter", interp.as_bytes());
    t.text("settings", settings_text(&c.limits, &c.depends_on, &c.inputs.value).as_bytes());
    let mut own = Vec::new();
    for (k, v) in &c.own_keys {
        own.extend_from_slice(k.as_bytes());
        own.push(b'=');
        own.extend_from_slice(v.as_bytes());
        own.push(b'\n');
    }
    t.text("section", &own);
    let mut env = blake3::Hasher::new();
    for (k, v) in cx.env {
        env.update(k.as_encoded_bytes());
        env.update(b"\0");
        env.update(v.as_encoded_bytes());
        env.update(b"\0");
    }
    t.parts.insert("[env]".into(), short(&env.finalize()));
    for input in &c.inputs.value {
        match input {
            Input::Path { written, path, glob: false } => t.path(written, path),
            Input::Path { written, path, glob: true } => t.glob(written, path),
            Input::Env(name) => {
                let value = cx.env.iter().rev().find(|(k, _)| k == name.as_str()).map(|(_, v)| v.clone());
                let value = value.or_else(|| std::env::var_os(name));
                let bytes = match &value {
                    Some(v) => [b"set\0", v.as_encoded_bytes()].concat(),
                    None => b"unset".to_vec(),
                };
                t.text(&input.written(), &bytes);
            }
            Input::Cmd(cmd) => t.command(&input.written(), cmd, cx, c.limits.max_time.value.limit()),
        }
    }
    let mut all = blake3::Hasher::new();
    for (k, v) in &t.parts {
        all.update(k.as_bytes());
        all.update(b"\0");
        all.update(v.as_bytes());
        all.update(b"\n");
    }
    let fp = Fingerprint { digest: short(&all.finalize()), at: String::new(), parts: t.parts };
    Taken { fp, problems: t.problems }
}

/// Whether a task with fingerprint `now` runs, given the one recorded at
/// its last OK.
pub fn decide(now: &Taken, recorded: Option<&Fingerprint>) -> Decision {
    let run = |why: String| Decision { run: true, why: format!("run: {why}") };
    if let Some(first) = now.problems.first() {
        return run(format!("input unreadable ({first})"));
    }
    match recorded {
        None => run("never succeeded".into()),
        Some(old) if old.digest == now.fp.digest => {
            Decision { run: false, why: format!("skip: unchanged since {}", old.at) }
        }
        Some(old) => run(format!("inputs changed ({})", changed(&old.parts, &now.fp.parts))),
    }
}

/// The names of the parts that differ between two fingerprints, at most
/// five and a count of the rest.
pub fn changed(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
    let mut names: Vec<&str> = new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, _)| k.as_str()).collect();
    names.extend(old.keys().filter(|k| !new.contains_key(*k)).map(String::as_str));
    names.sort_unstable();
    names.dedup();
    let shown = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    match names.len() {
        0 => "nothing".into(),
        n if n > 5 => format!("{shown} and {} more", n - 5),
        _ => shown,
    }
}

/// The effective settings as one text (what `settings` digests).
fn settings_text(l: &Limits, depends_on: &[String], inputs: &[Input]) -> String {
    let inputs: Vec<String> = inputs.iter().map(Input::written).collect();
    format!(
        "max_time={}\nmax_tries={}\nsleep_time={}\nretry_jitter={}\nkill_grace={}\ndepends_on={}\ninputs={}\n",
        l.max_time.value.0,
        l.max_tries.value,
        l.sleep_time.value.0,
        l.retry_jitter.value.0,
        l.kill_grace.value.0,
        depends_on.join(","),
        inputs.join("\0"),
    )
}

/// 128 bits of a digest, as hex.
fn short(h: &blake3::Hash) -> String {
    crate::util::hex(&h.as_bytes()[..16])
}

struct Taking {
    parts: BTreeMap<String, String>,
    problems: Vec<String>,
}

impl Taking {
    fn text(&mut self, name: &str, bytes: &[u8]) {
        self.parts.insert(name.to_string(), short(&blake3::hash(bytes)));
    }

    fn problem(&mut self, name: &str, why: String) {
        self.parts.insert(name.to_string(), UNREADABLE.into());
        self.problems.push(format!("{name}: {why}"));
    }

    /// A regular file's bytes.
    fn file(&mut self, name: &str, path: &Path) {
        match hash_file(path) {
            Ok(h) => {
                self.parts.insert(name.to_string(), h);
            }
            Err(e) => self.problem(name, e.to_string()),
        }
    }

    /// A plain path: a file's bytes, a directory's files, or that it is
    /// missing (which is part of the fingerprint: its appearing is a change).
    fn path(&mut self, name: &str, path: &Path) {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.parts.insert(name.to_string(), "missing".into());
            }
            Err(e) => self.problem(name, e.to_string()),
            Ok(m) if m.is_dir() => match hash_dir(path) {
                Ok(h) => {
                    self.parts.insert(name.to_string(), h);
                }
                Err(e) => self.problem(name, e),
            },
            Ok(_) => self.file(name, path),
        }
    }

    /// A glob: the list of what it matches (matching nothing is a value
    /// too), and each match as a plain path.
    fn glob(&mut self, name: &str, pattern: &Path) {
        let opts = glob::MatchOptions { require_literal_separator: true, ..glob::MatchOptions::new() };
        let paths = match glob::glob_with(&pattern.to_string_lossy(), opts) {
            Ok(paths) => paths,
            Err(e) => return self.problem(name, e.to_string()),
        };
        let mut list = Vec::new();
        let mut matched: Vec<PathBuf> = Vec::new();
        for entry in paths {
            match entry {
                Ok(p) => matched.push(p),
                Err(e) => return self.problem(name, e.to_string()),
            }
        }
        matched.sort();
        for p in &matched {
            list.extend_from_slice(p.as_os_str().as_encoded_bytes());
            list.push(0);
        }
        self.text(&format!("glob:{name}"), &list);
        for p in matched {
            self.path(&p.to_string_lossy(), &p);
        }
    }

    /// `cmd:COMMAND`: its standard output. A command that fails, cannot
    /// start or outlasts the task's `max_time` is a problem.
    fn command(&mut self, name: &str, cmd: &str, cx: &Context, limit: Option<Duration>) {
        match run_command(cmd, cx, limit) {
            Ok(out) => self.text(name, &out),
            Err(why) => self.problem(name, why),
        }
    }
}

/// Hashes a regular file (opened without blocking, so a FIFO put in its
/// place cannot hang runner).
fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut h = blake3::Hasher::new();
    if m.len() < LARGE {
        let mut buf = vec![0u8; (m.len() as usize).clamp(4096, CHUNK)];
        loop {
            match read_some(&mut f, &mut buf)? {
                0 => break,
                n => h.update(&buf[..n]),
            };
        }
    } else {
        hash_large(&mut f, &mut h)?;
    }
    Ok(short(&h.finalize()))
}

/// Files from this size on are read by one thread while another hashes.
const LARGE: u64 = 4 << 20;
/// Read size: small enough to stay in cache between the read and the hash.
const CHUNK: usize = 128 << 10;

fn read_some(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A large file: a reader thread fills buffers while this thread hashes
/// the previous ones, so that hashing runs at the speed of reading (no
/// mmap: a file truncated under a mapping would kill runner with SIGBUS).
fn hash_large(f: &mut std::fs::File, h: &mut blake3::Hasher) -> std::io::Result<()> {
    use std::sync::mpsc::sync_channel;
    const BUFFERS: usize = 4;
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        let _ = empty_tx.send(vec![0u8; 1 << 20]);
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || -> std::io::Result<()> {
            while let Ok(mut buf) = empty_rx.recv() {
                let n = read_some(f, &mut buf)?;
                if n == 0 || full_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        for (buf, n) in full_rx.iter() {
            h.update(&buf[..n]);
            let _ = empty_tx.send(buf);
        }
        reader.join().unwrap_or_else(|_| Err(std::io::Error::other("the reading thread failed")))
    })
}

/// A directory: every regular file below it, by relative path and
/// content (symbolic links to directories are not followed).
fn hash_dir(dir: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", d.display()))?;
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) => files.push(path),
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
    }
    files.sort();
    let mut h = blake3::Hasher::new();
    for f in files {
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        let digest = match std::fs::metadata(&f) {
            Ok(m) if m.is_file() => hash_file(&f).map_err(|e| format!("{}: {e}", f.display()))?,
            Ok(_) => "special".into(),
            Err(_) => "dangling".into(),
        };
        h.update(digest.as_bytes());
        h.update(b"\n");
    }
    Ok(short(&h.finalize()))
}

/// How long a `cmd:` input's output may stay open after it exited.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs `sh -c cmd` in the config's directory with the task's `[env]`,
/// in its own process group; its standard output, or why it failed.
fn run_command(cmd: &str, cx: &Context, limit: Option<Duration>) -> Result<Vec<u8>, String> {
    use std::os::unix::process::CommandExt;
    use wait_timeout::ChildExt;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(cx.config_dir)
        .envs(cx.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    let group = child.id() as i32;
    // Each stream is read to its end on a thread of its own, which hands
    // the bytes over a channel: a process that left the group and still
    // holds the pipe cannot keep runner waiting.
    let reader = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut out);
            }
            let _ = tx.send(out);
        });
        rx
    };
    let stdout = reader(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.wait_timeout(Duration::from_millis(100)) {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(format!("cannot wait for it: {e}")),
        }
        let late = limit.is_some_and(|l| started.elapsed() >= l);
        if late || signals::cancelled().is_some() {
            os::kill_group(group, libc::SIGKILL);
            let _ = child.wait();
            break Err(if late { "timed out (the task's max_time)".into() } else { "runner was signalled".into() });
        }
    };
    // The group is gone with its leader only if nothing else holds it.
    os::kill_group(group, libc::SIGKILL);
    let held = || "a process it started still holds its output".to_string();
    let out = stdout.recv_timeout(DRAIN).map_err(|_| held())?;
    let err = stderr.recv_timeout(DRAIN).unwrap_or_default();
    let status = status?;
    if status.success() {
        return Ok(out);
    }
    let first = String::from_utf8_lossy(&err).lines().next().unwrap_or("").trim().to_string();
    let how = match status.code() {
        Some(c) => format!("exited {c}"),
        None => "was killed by a signal".into(),
    };
    Err(if first.is_empty() { how } else { format!("{how}: {first}") })
}
