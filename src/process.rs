//! Running one child process: its own process group, stdin from /dev/null,
//! output forwarded line by line with a prefix, the `max_time` deadline and
//! the SIGTERM → SIGKILL escalation, and the short drain of output that a
//! leftover process still holds. No policy: what an exit means is
//! `outcome`'s business; whether leftovers die is the caller's.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::SystemTime;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use wait_timeout::ChildExt;

use crate::outcome::Exit;
use crate::{signals, unix};

/// How long runner waits, after a child exits, for leftovers to release
/// its stdout and stderr before it moves on.
pub const DRAIN: Duration = Duration::from_millis(250);

/// What to run and under which limits.
pub struct Job<'a> {
    /// Program and arguments.
    pub argv: Vec<OsString>,
    /// Variables added to runner's own environment.
    pub env: &'a [(OsString, OsString)],
    /// What the output lines are prefixed with (`[label] `).
    pub label: &'a str,
    /// What spawn errors name (the task's path).
    pub what: &'a str,
    pub max_time: Option<Duration>,
    pub kill_grace: Duration,
    pub raw_output: bool,
    /// The task's log file, a second sink for its output.
    pub log: Option<&'a LogSink>,
}

/// The finished child, and its process group, which may still hold
/// leftovers. Dropping it leaves them alone.
pub struct Finished {
    pub exit: Exit,
    /// Leftovers still held stdout/stderr after [`DRAIN`].
    pub leaked_output: bool,
    group: i32,
}

impl Finished {
    /// SIGKILLs whatever is left in the child's process group.
    pub fn kill_leftovers(&self) {
        if self.group > 0 {
            unix::kill_group(self.group, libc::SIGKILL);
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        signals::set_group(0, Duration::ZERO);
    }
}

/// Runs `job` to its end. Never fails: a child that cannot be started is an
/// [`Exit`] with `spawn_error` set.
pub fn run(job: &Job) -> Finished {
    let started = Instant::now();
    // A child started after runner was cancelled (the post hook that reports
    // CANCELLED) is allowed to run; one started as the signal arrives is not.
    let cancelled_before = signals::cancelled().is_some();
    let mut cmd = Command::new(&job.argv[0]);
    cmd.args(&job.argv[1..])
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let reason = spawn_reason(job, &e);
            let exit = Exit { spawn_error: Some(reason), duration: started.elapsed(), ..Exit::default() };
            return Finished { exit, leaked_output: false, group: 0 };
        }
    };
    let group = child.id() as i32;
    if signals::set_group(group, job.kill_grace) && !cancelled_before {
        unix::kill_group(group, libc::SIGTERM);
    }
    let drained = forward_output(&mut child, job);
    let (status, timed_out) = wait(&mut child, job);
    let leaked_output = drained.recv_timeout(DRAIN).is_err();
    let exit = Exit {
        code: status.as_ref().ok().and_then(ExitStatus::code),
        signal: status.as_ref().ok().and_then(ExitStatus::signal),
        timed_out,
        spawn_error: status.err().map(|e| format!("{}: waiting failed: {e}", job.what)),
        cancelled_by: signals::cancelled().filter(|_| !cancelled_before),
        duration: started.elapsed(),
    };
    Finished { exit, leaked_output, group }
}

fn spawn_reason(job: &Job, e: &io::Error) -> String {
    let program = std::path::Path::new(&job.argv[0]);
    let target = if job.argv.len() > 1 {
        format!("interpreter {} for {}", program.display(), job.what)
    } else {
        job.what.to_string()
    };
    if e.kind() == io::ErrorKind::NotFound
        && let Ok(link) = std::fs::read_link(program)
    {
        return format!("cannot start {target}: broken symlink to {}", link.display());
    }
    format!("cannot start {target}: {e}")
}

/// Waits for the child, enforcing `max_time` and `kill_grace`.
/// Returns the status and whether the deadline passed.
fn wait(child: &mut Child, job: &Job) -> (io::Result<ExitStatus>, bool) {
    let group = child.id() as i32;
    let Some(max_time) = job.max_time else {
        return (child.wait(), false);
    };
    match wait_until(child, Instant::now() + max_time) {
        Ok(Some(status)) => return (Ok(status), false),
        Ok(None) => {}
        Err(e) => return (Err(e), false),
    }
    crate::logging::warn(&format!("{}: exceeded max_time of {:?}; sending SIGTERM", job.label, max_time));
    unix::kill_group(group, libc::SIGTERM);
    match wait_until(child, Instant::now() + job.kill_grace) {
        Ok(Some(status)) => return (Ok(status), true),
        Ok(None) => {}
        Err(e) => return (Err(e), true),
    }
    crate::logging::warn(&format!("{}: still running after kill_grace; sending SIGKILL", job.label));
    unix::kill_group(group, libc::SIGKILL);
    (child.wait(), true)
}

fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return child.try_wait();
        }
        if let Some(status) = child.wait_timeout(deadline - now)? {
            return Ok(Some(status));
        }
    }
}

/// Which of the child's streams a chunk came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stream {
    Out,
    Err,
}

/// A destination for a child's output.
pub trait Sink: Send {
    fn write(&mut self, stream: Stream, data: &[u8]);
    /// Both streams reached end of file.
    fn finish(&mut self) {}
}

/// Runner's own stdout/stderr: each line prefixed with `[label] `, or the
/// bytes untouched with `--raw-output`.
pub struct Terminal {
    prefix: Vec<u8>,
    raw: bool,
    at_line_start: [bool; 2],
    buf: Vec<u8>,
}

impl Terminal {
    pub fn new(label: &str, raw: bool) -> Terminal {
        Terminal { prefix: format!("[{label}] ").into_bytes(), raw, at_line_start: [true; 2], buf: Vec::new() }
    }

    fn emit(stream: Stream, data: &[u8]) {
        let _ = match stream {
            Stream::Out => io::stdout().lock().write_all(data),
            Stream::Err => io::stderr().lock().write_all(data),
        };
    }
}

impl Sink for Terminal {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        if self.raw {
            return Terminal::emit(stream, data);
        }
        let start = &mut self.at_line_start[stream as usize];
        self.buf.clear();
        for line in data.split_inclusive(|&b| b == b'\n') {
            if *start {
                self.buf.extend_from_slice(&self.prefix);
            }
            self.buf.extend_from_slice(line);
            *start = line.ends_with(b"\n");
        }
        Terminal::emit(stream, &self.buf);
    }

    fn finish(&mut self) {
        for stream in [Stream::Out, Stream::Err] {
            if !self.raw && !self.at_line_start[stream as usize] {
                Terminal::emit(stream, b"\n");
            }
        }
    }
}

/// A task's log file: every line with a timestamp, stderr lines marked
/// `[err]`, stdout lines `[out]`, both streams in arrival order. A write
/// error (disk full) is warned about once per process and otherwise ignored.
pub struct LogSink {
    file: Arc<File>,
    /// The last line written is unfinished, and came from this stream.
    open_line: Option<Stream>,
    buf: Vec<u8>,
}

static LOG_WRITE_WARNED: AtomicBool = AtomicBool::new(false);

impl LogSink {
    /// Opens `path` for appending (created 0600).
    pub fn open(path: &Path) -> io::Result<LogSink> {
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(LogSink { file: Arc::new(file), open_line: None, buf: Vec::new() })
    }

    /// Another writer on the same file, with its own line state.
    pub fn share(&self) -> LogSink {
        LogSink { file: Arc::clone(&self.file), open_line: None, buf: Vec::new() }
    }

    /// A line from runner itself.
    pub fn note(&self, text: &str) {
        let line = format!("{} [runner] {text}\n", crate::hooks::timestamp(SystemTime::now()));
        self.append(line.as_bytes());
    }

    fn append(&self, data: &[u8]) {
        if let Err(e) = (&*self.file).write_all(data)
            && !LOG_WRITE_WARNED.swap(true, Ordering::Relaxed)
        {
            crate::logging::warn(&format!("cannot write task log: {e}; the chain goes on"));
        }
    }
}

impl Sink for LogSink {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        let stamp = crate::hooks::timestamp(SystemTime::now());
        let mark: &[u8] = if stream == Stream::Err { b" [err] " } else { b" [out] " };
        self.buf.clear();
        // The other stream's unfinished line ends here; this one continues
        // its own unfinished line.
        if self.open_line.is_some_and(|s| s != stream) {
            self.buf.push(b'\n');
            self.open_line = None;
        }
        for line in data.split_inclusive(|&b| b == b'\n') {
            if self.open_line.is_none() {
                self.buf.extend_from_slice(stamp.as_bytes());
                self.buf.extend_from_slice(mark);
            }
            self.buf.extend_from_slice(line);
            self.open_line = (!line.ends_with(b"\n")).then_some(stream);
        }
        let buf = std::mem::take(&mut self.buf);
        self.append(&buf);
        self.buf = buf;
    }

    fn finish(&mut self) {
        if self.open_line.take().is_some() {
            self.append(b"\n");
        }
    }
}

/// Starts the thread that copies the child's stdout and stderr to the sinks,
/// in arrival order, through one fixed buffer (memory stays flat however
/// much the child prints). The receiver gets a message when both streams
/// are closed.
fn forward_output(child: &mut Child, job: &Job) -> mpsc::Receiver<()> {
    let (done, drained) = mpsc::sync_channel(1);
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Terminal::new(job.label, job.raw_output))];
    if let Some(log) = job.log {
        sinks.push(Box::new(log.share()));
    }
    let streams = (child.stdout.take(), child.stderr.take());
    let spawned = std::thread::Builder::new().name("output".into()).spawn(move || {
        let (Some(out), Some(err)) = streams else {
            return;
        };
        pump(out, err, sinks);
        let _ = done.send(());
    });
    if let Err(e) = spawned {
        crate::logging::error(&format!("{}: cannot start output thread: {e}", job.label));
    }
    drained
}

fn pump(mut out: impl Read + AsFd, mut err: impl Read + AsFd, mut sinks: Vec<Box<dyn Sink>>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = [true, true];
    while open[0] || open[1] {
        let mut fds = Vec::with_capacity(2);
        if open[0] {
            fds.push((Stream::Out, PollFd::new(&out, PollFlags::IN)));
        }
        if open[1] {
            fds.push((Stream::Err, PollFd::new(&err, PollFlags::IN)));
        }
        let mut pollfds: Vec<PollFd> = fds.iter().map(|(_, p)| p.clone()).collect();
        match rustix::event::poll(&mut pollfds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
        }
        let ready: Vec<Stream> =
            fds.iter().zip(&pollfds).filter(|(_, p)| !p.revents().is_empty()).map(|((s, _), _)| *s).collect();
        drop(pollfds);
        drop(fds);
        for stream in ready {
            let n = match stream {
                Stream::Out => out.read(&mut buf),
                Stream::Err => err.read(&mut buf),
            };
            match n {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => open[stream as usize] = false,
                Ok(n) => sinks.iter_mut().for_each(|s| s.write(stream, &buf[..n])),
            }
        }
    }
    sinks.iter_mut().for_each(|s| s.finish());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn log_sink_marks_streams_and_survives_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let mut log = LogSink::open(&path).unwrap();
        log.write(Stream::Out, b"one\ntw");
        log.write(Stream::Err, b"err\n");
        log.write(Stream::Out, b"o\n");
        log.finish();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').map_or("", |(_, rest)| rest)).collect();
        assert_eq!(lines, ["[out] one", "[out] tw", "[err] err", "[out] o"]);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let mut full = LogSink::open(Path::new("/dev/full")).unwrap();
        full.write(Stream::Out, b"no space\n");
        full.write(Stream::Out, b"still no space\n");
        assert!(LOG_WRITE_WARNED.load(Ordering::Relaxed));
    }
}
