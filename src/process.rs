//! Running one child process: its own process group, stdin from /dev/null,
//! output forwarded line by line with a prefix, the `max_time` deadline and
//! the SIGTERM → SIGKILL escalation, and the short drain of output that a
//! leftover process still holds. On Linux 5.3+ one poll loop over the
//! child's pipes and its pidfd does all of it; elsewhere an output thread
//! and wait-timeout do. No policy: what an exit means is
//! `outcome`'s business; whether leftovers die is the caller's.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags};
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
    /// An environment entry (`NAME=value`) that marks the job's processes,
    /// so that ones that escaped its process group can be found.
    pub tag: Option<&'a [u8]>,
}

/// The finished child, and its process group, which may still hold
/// leftovers. Dropping it leaves them alone.
pub struct Finished {
    pub exit: Exit,
    /// Leftovers still held stdout/stderr after [`DRAIN`].
    pub leaked_output: bool,
    group: i32,
    tag: Option<Vec<u8>>,
}

impl Finished {
    /// SIGKILLs whatever is left in the child's process group, and the
    /// orphans runner adopted that carry the job's tag (a daemon that left
    /// the group with `setsid`).
    pub fn kill_leftovers(&self) {
        if self.group > 0 {
            unix::kill_group(self.group, libc::SIGKILL);
        }
        if let Some(tag) = &self.tag {
            let n = unix::kill_adopted(tag);
            if n > 0 {
                crate::logging::warn(&format!("killed {n} process(es) that had escaped the process group"));
            }
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
            return Finished { exit, leaked_output: false, group: 0, tag: None };
        }
    };
    let group = child.id() as i32;
    if signals::set_group(group, job.kill_grace) && !cancelled_before {
        unix::kill_group(group, libc::SIGTERM);
    }
    let sinks = sinks(job);
    let (status, timed_out, leaked_output) = match pidfd(&child) {
        Some(pidfd) => supervise(&mut child, job, pidfd, sinks),
        None => supervise_threaded(&mut child, job, sinks),
    };
    let exit = Exit {
        code: status.as_ref().ok().and_then(ExitStatus::code),
        signal: status.as_ref().ok().and_then(ExitStatus::signal),
        timed_out,
        spawn_error: status.err().map(|e| format!("{}: waiting failed: {e}", job.what)),
        cancelled_by: signals::cancelled().filter(|_| !cancelled_before),
        duration: started.elapsed(),
    };
    // Every std child is waited for now: adopted orphans that exited can
    // be reaped by pid.
    unix::reap_adopted();
    Finished { exit, leaked_output, group, tag: job.tag.map(<[u8]>::to_vec) }
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

/// A pidfd for the child, unless disabled (`RUNNER_NO_PIDFD`, for tests of
/// the fallback) or not supported (Linux before 5.3).
fn pidfd(child: &Child) -> Option<OwnedFd> {
    if std::env::var_os("RUNNER_NO_PIDFD").is_some() {
        return None;
    }
    let pid = Pid::from_raw(child.id() as i32)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// The output sinks of a job: the terminal, and the log file if any.
fn sinks(job: &Job) -> Vec<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Terminal::new(job.label, job.raw_output))];
    if let Some(log) = job.log {
        sinks.push(Box::new(log.share()));
    }
    sinks
}

/// The supervision loop on one thread: poll the child's stdout, stderr and
/// pidfd with the next deadline as timeout (`max_time`, then `kill_grace`,
/// then the output drain). No thread per task, no SIGCHLD, and deadlines
/// are met to the millisecond. Returns the status, whether `max_time`
/// passed, and whether leftovers still held the output after the drain (a
/// background thread then keeps forwarding it).
fn supervise(
    child: &mut Child,
    job: &Job,
    pidfd: OwnedFd,
    mut sinks: Vec<Box<dyn Sink>>,
) -> (io::Result<ExitStatus>, bool, bool) {
    let group = child.id() as i32;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return (child.wait(), false, false);
    };
    let mut buf = take_buffer();
    let mut open = [true, true];
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut timed_out = false;
    let mut deadline = job.max_time.map(|t| Instant::now() + t);
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        if status.is_some() && !open[0] && !open[1] {
            break;
        }
        let now = Instant::now();
        if drain_until.is_some_and(|d| now >= d) {
            break;
        }
        if status.is_none() {
            if deadline.is_some_and(|d| now >= d) {
                deadline = None;
                timed_out = true;
                crate::logging::warn(&format!("{}: exceeded max_time; sending SIGTERM", job.label));
                unix::kill_group(group, libc::SIGTERM);
                kill_at = Some(now + job.kill_grace);
            }
            if kill_at.is_some_and(|k| now >= k) {
                kill_at = None;
                crate::logging::warn(&format!("{}: still running after kill_grace; sending SIGKILL", job.label));
                unix::kill_group(group, libc::SIGKILL);
            }
        }
        let next = [deadline, kill_at, drain_until].into_iter().flatten().min();
        let timeout = next.map(|n| {
            let d = n.saturating_duration_since(Instant::now());
            // Round up to whole milliseconds so that poll never wakes early.
            let ms = d.as_nanos().div_ceil(1_000_000) as i64;
            rustix::event::Timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 }
        });
        // Only what is still open is polled: a closed pipe would report
        // POLLHUP forever and turn the wait into a busy loop.
        let revents = {
            let wanted = [open[0], open[1], status.is_none()];
            let fds = [
                PollFd::new(&out, PollFlags::IN),
                PollFd::new(&err, PollFlags::IN),
                PollFd::new(&pidfd, PollFlags::IN),
            ];
            let mut polled = fds.clone();
            let mut n = 0;
            for (i, fd) in fds.iter().enumerate() {
                if wanted[i] {
                    polled[n] = fd.clone();
                    n += 1;
                }
            }
            match rustix::event::poll(&mut polled[..n], timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
            }
            let mut r = [PollFlags::empty(); 3];
            let mut k = 0;
            for (i, slot) in r.iter_mut().enumerate() {
                if wanted[i] {
                    *slot = polled[k].revents();
                    k += 1;
                }
            }
            r
        };
        for stream in [Stream::Out, Stream::Err] {
            if !open[stream as usize] || revents[stream as usize].is_empty() {
                continue;
            }
            let reader: &mut dyn Read = match stream {
                Stream::Out => &mut out,
                Stream::Err => &mut err,
            };
            open[stream as usize] = forward_chunk(reader, stream, &mut buf, &mut sinks);
        }
        if status.is_none() && !revents[2].is_empty() {
            status = Some(child.wait());
            drain_until = Some(Instant::now() + DRAIN);
        }
    }
    give_buffer(buf);
    let leaked = open[0] || open[1];
    if leaked {
        // Leftovers hold the output: keep forwarding it in the background.
        let spawned = std::thread::Builder::new().name("leaked-output".into()).spawn(move || {
            let out = open[0].then_some(out);
            let err = open[1].then_some(err);
            pump_some(out, err, sinks);
        });
        if let Err(e) = spawned {
            crate::logging::warn(&format!("{}: cannot keep forwarding leaked output: {e}", job.label));
        }
    } else {
        sinks.iter_mut().for_each(|s| s.finish());
    }
    let status = status.unwrap_or_else(|| child.wait());
    (status, timed_out, leaked)
}

/// The fallback without pidfd: an output thread, and wait-timeout (SIGCHLD)
/// for the deadlines.
fn supervise_threaded(child: &mut Child, job: &Job, sinks: Vec<Box<dyn Sink>>) -> (io::Result<ExitStatus>, bool, bool) {
    let drained = forward_output(child, job, sinks);
    let (status, timed_out) = wait(child, job);
    let leaked_output = drained.recv_timeout(DRAIN).is_err();
    (status, timed_out, leaked_output)
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

    /// Writes and flushes: stdout is line-buffered, and an unfinished line
    /// (a progress message, a prompt) must show now, not at the next newline.
    fn emit(stream: Stream, data: &[u8]) {
        let _ = match stream {
            Stream::Out => {
                let mut out = io::stdout().lock();
                out.write_all(data).and_then(|_| out.flush())
            }
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
        Ok(LogSink::new(file))
    }

    /// A sink writing to `file`, opened for appending.
    pub fn new(file: File) -> LogSink {
        LogSink { file: Arc::new(file), open_line: None, buf: Vec::new() }
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
fn forward_output(child: &mut Child, job: &Job, sinks: Vec<Box<dyn Sink>>) -> mpsc::Receiver<()> {
    let (done, drained) = mpsc::sync_channel(1);
    let streams = (child.stdout.take(), child.stderr.take());
    let spawned = std::thread::Builder::new().name("output".into()).spawn(move || {
        pump_some(streams.0, streams.1, sinks);
        let _ = done.send(());
    });
    if let Err(e) = spawned {
        crate::logging::error(&format!("{}: cannot start output thread: {e}", job.label));
    }
    drained
}

/// Spare output buffers: a chain of quick tasks reuses them instead of
/// allocating and zeroing one per task.
static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
const BUFFER_SIZE: usize = 32 * 1024;

fn take_buffer() -> Vec<u8> {
    BUFFERS.lock().ok().and_then(|mut b| b.pop()).unwrap_or_else(|| vec![0u8; BUFFER_SIZE])
}

fn give_buffer(buf: Vec<u8>) {
    if let Ok(mut b) = BUFFERS.lock()
        && b.len() < 4
    {
        b.push(buf);
    }
}

/// Reads one chunk from a ready stream and hands it to every sink. Returns
/// whether the stream is still open.
fn forward_chunk(reader: &mut dyn Read, stream: Stream, buf: &mut [u8], sinks: &mut [Box<dyn Sink>]) -> bool {
    match reader.read(buf) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
        Ok(0) | Err(_) => false,
        Ok(n) => {
            sinks.iter_mut().for_each(|s| s.write(stream, &buf[..n]));
            true
        }
    }
}

/// Copies whichever of the two streams are given to the sinks until both
/// reach end of file, in arrival order, through one fixed buffer.
fn pump_some(mut out: Option<ChildStdout>, mut err: Option<ChildStderr>, mut sinks: Vec<Box<dyn Sink>>) {
    let mut buf = take_buffer();
    while out.is_some() || err.is_some() {
        let revents = {
            let mut fds: [Option<PollFd>; 2] = [
                out.as_ref().map(|o| PollFd::new(o, PollFlags::IN)),
                err.as_ref().map(|e| PollFd::new(e, PollFlags::IN)),
            ];
            let mut polled: Vec<PollFd> = fds.iter().flatten().cloned().collect();
            match rustix::event::poll(&mut polled, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
            let mut it = polled.iter();
            let mut r = [PollFlags::empty(); 2];
            for (i, f) in fds.iter_mut().enumerate() {
                if f.is_some() {
                    r[i] = it.next().map(PollFd::revents).unwrap_or(PollFlags::empty());
                }
            }
            r
        };
        for stream in [Stream::Out, Stream::Err] {
            if revents[stream as usize].is_empty() {
                continue;
            }
            // A stream is dropped (closed) once it reaches end of file.
            match stream {
                Stream::Out => {
                    if let Some(o) = &mut out
                        && !forward_chunk(o, stream, &mut buf, &mut sinks)
                    {
                        out = None;
                    }
                }
                Stream::Err => {
                    if let Some(e) = &mut err
                        && !forward_chunk(e, stream, &mut buf, &mut sinks)
                    {
                        err = None;
                    }
                }
            }
        }
    }
    give_buffer(buf);
    sinks.iter_mut().for_each(|s| s.finish());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn log_sink_marks_streams_and_survives_a_full_disk() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.log");
        let mut log = LogSink::open(&path)?;
        log.write(Stream::Out, b"one\ntw");
        log.write(Stream::Err, b"err\n");
        log.write(Stream::Out, b"o\n");
        log.finish();
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').map_or("", |(_, rest)| rest)).collect();
        assert_eq!(lines, ["[out] one", "[out] tw", "[err] err", "[out] o"]);
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);

        let mut full = LogSink::open(Path::new("/dev/full"))?;
        full.write(Stream::Out, b"no space\n");
        full.write(Stream::Out, b"still no space\n");
        assert!(LOG_WRITE_WARNED.load(Ordering::Relaxed));
        Ok(())
    }
}
