//! Where a child's output goes: runner's terminal (each line prefixed
//! `[label] `), the task's log file (timestamped, capped), and — for output
//! that leftovers still hold after their job ended — one drain thread for
//! the whole run, holding at most [`MAX_LEAKS`] leaked jobs' pipes (the
//! oldest is let go beyond that: its writers then get EPIPE). Memory stays
//! flat however much a child prints: one fixed buffer per reader.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::process::{Child, ChildStderr, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustix::event::{PollFd, PollFlags};

use super::Job;

/// The output sinks of a job: the terminal, and the log file if any.
pub fn sinks(job: &Job) -> Vec<Box<dyn Sink>> {
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(Terminal::new(job.label, job.raw_output))];
    if let Some(log) = job.log {
        sinks.push(Box::new(log.share()));
    }
    sinks
}

/// Starts the thread that copies the child's stdout and stderr to the sinks
/// (the fallback without pidfd). The receiver gets a message when both
/// streams are closed. [`Handoff::now`] makes the thread hand what is still
/// open to the shared drain and end at once, so that no thread outlives its
/// job.
pub fn forward_in_thread(child: &mut Child, job: &Job, sinks: Vec<Box<dyn Sink>>) -> (mpsc::Receiver<()>, Handoff) {
    let (done, drained) = mpsc::sync_channel(1);
    let streams = (child.stdout.take(), child.stderr.take());
    let label = job.label.to_string();
    let (wake, bell) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok((r, w)) => (Some(r), Some(w)),
        Err(_) => (None, None),
    };
    let spawned = std::thread::Builder::new().name("output".into()).spawn(move || {
        pump_some(streams.0, streams.1, sinks, wake, &label);
        let _ = done.send(());
    });
    let thread = match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            crate::logging::error(&format!("{}: cannot start output thread: {e}", job.label));
            None
        }
    };
    (drained, Handoff { bell, thread })
}

/// The fallback output thread of a job: told to hand its pipes to the
/// shared drain, or waited for, it ends before the job's `run` returns.
pub struct Handoff {
    bell: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handoff {
    /// Hands what is still open to the shared drain; the thread ends.
    pub fn now(self) {
        // Without a bell the thread cannot be told: it is left to end when
        // the output closes.
        if let Some(bell) = &self.bell {
            let _ = rustix::io::write(bell, &[1]);
            self.join();
        }
    }

    /// Waits for the thread (it has ended its work, or is about to).
    pub fn join(self) {
        if let Some(t) = self.thread {
            let _ = t.join();
        }
    }
}

/// Leaked jobs whose pipes the drain holds at most (two fds each).
pub const MAX_LEAKS: usize = 8;

/// A finished job's pipes that leftovers still hold.
struct Leak {
    out: Option<ChildStdout>,
    err: Option<ChildStderr>,
    sinks: Vec<Box<dyn Sink>>,
}

/// The drain: new leaks arrive on the channel; the doorbell pipe wakes the
/// thread's poll.
struct Drain {
    tx: Mutex<mpsc::Sender<Leak>>,
    bell: OwnedFd,
}

static DRAIN_THREAD: OnceLock<Option<Drain>> = OnceLock::new();

/// Hands the pipes of a finished job to the drain thread, which forwards
/// what leftovers still write until they close them.
pub fn leak(label: &str, out: Option<ChildStdout>, err: Option<ChildStderr>, sinks: Vec<Box<dyn Sink>>) {
    let drain = DRAIN_THREAD.get_or_init(start_drain);
    let Some(drain) = drain else {
        crate::logging::warn(&format!("{label}: cannot keep forwarding leaked output; letting it go"));
        return;
    };
    if let Ok(tx) = drain.tx.lock() {
        let _ = tx.send(Leak { out, err, sinks });
    }
    let _ = rustix::io::write(&drain.bell, &[1]);
}

fn start_drain() -> Option<Drain> {
    let (bell_read, bell) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK).ok()?;
    let (tx, rx) = mpsc::channel::<Leak>();
    std::thread::Builder::new().name("leaked-output".into()).spawn(move || drain_loop(rx, bell_read)).ok()?;
    Some(Drain { tx: Mutex::new(tx), bell })
}

fn drain_loop(rx: mpsc::Receiver<Leak>, bell: OwnedFd) {
    let mut leaks: Vec<Leak> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Ok(l) = rx.try_recv() {
            if leaks.len() >= MAX_LEAKS {
                let mut oldest = leaks.remove(0);
                oldest.sinks.iter_mut().for_each(|s| s.finish());
            }
            leaks.push(l);
        }
        let mut fds = vec![PollFd::new(&bell, PollFlags::IN)];
        for l in &leaks {
            if let Some(o) = &l.out {
                fds.push(PollFd::new(o, PollFlags::IN));
            }
            if let Some(e) = &l.err {
                fds.push(PollFd::new(e, PollFlags::IN));
            }
        }
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            let mut b = [0u8; 64];
            while matches!(rustix::io::read(&bell, &mut b), Ok(n) if n > 0) {}
        }
        let mut i = 1;
        for l in &mut leaks {
            if l.out.is_some() {
                if ready[i]
                    && let Some(o) = &mut l.out
                    && !forward_chunk(o, Stream::Out, &mut buf, &mut l.sinks)
                {
                    l.out = None;
                }
                i += 1;
            }
            if l.err.is_some() {
                if ready[i]
                    && let Some(e) = &mut l.err
                    && !forward_chunk(e, Stream::Err, &mut buf, &mut l.sinks)
                {
                    l.err = None;
                }
                i += 1;
            }
        }
        leaks.retain_mut(|l| {
            let open = l.out.is_some() || l.err.is_some();
            if !open {
                l.sinks.iter_mut().for_each(|s| s.finish());
            }
            open
        });
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
    /// Under journald: the unfinished line of each stream.
    pending: [Vec<u8>; 2],
}

impl Terminal {
    /// Under journald: each whole line as its own entry (stdout at info,
    /// stderr at warning), an unfinished one kept until its end.
    fn send_to_journal(&mut self, stream: Stream, data: &[u8]) {
        let priority = if stream == Stream::Err { 4 } else { 6 };
        let pending = &mut self.pending[stream as usize];
        for line in lines(data) {
            pending.extend_from_slice(line);
            if line.ends_with(b"\n") || pending.len() >= 48 * 1024 {
                let mut message = self.prefix.clone();
                message.extend_from_slice(pending);
                if !crate::journald::send(priority, &message) {
                    // No native socket: a `<N>` prefix journald reads.
                    let mut prefixed = format!("<{priority}>").into_bytes();
                    prefixed.extend_from_slice(&message);
                    Terminal::emit(stream, &prefixed);
                }
                pending.clear();
            }
        }
    }

    pub fn new(label: &str, raw: bool) -> Terminal {
        Terminal {
            prefix: format!("[{label}] ").into_bytes(),
            raw,
            at_line_start: [true; 2],
            buf: Vec::new(),
            pending: [Vec::new(), Vec::new()],
        }
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

/// The lines of `data`, each with its newline (the last may lack one),
/// found with SIMD (memchr): output passes at memory speed.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', data);
    std::iter::from_fn(move || {
        if start >= data.len() {
            return None;
        }
        let end = ends.next().map_or(data.len(), |i| i + 1);
        let line = &data[start..end];
        start = end;
        Some(line)
    })
}

impl Sink for Terminal {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        if self.raw {
            return Terminal::emit(stream, data);
        }
        if !matches!(crate::journald::mode(), crate::journald::Journal::Off) {
            return self.send_to_journal(stream, data);
        }
        let start = &mut self.at_line_start[stream as usize];
        self.buf.clear();
        self.buf.reserve(data.len() + self.prefix.len() * (data.len() / 32 + 2));
        for line in lines(data) {
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
            if !self.pending[stream as usize].is_empty() {
                self.send_to_journal(stream, b"\n");
            }
            if !self.raw && !self.at_line_start[stream as usize] {
                Terminal::emit(stream, b"\n");
            }
        }
    }
}

/// A task's log file: every line with a timestamp, stderr lines marked
/// `[err]`, stdout lines `[out]`, both streams in arrival order, capped at
/// `max_log_size` keeping the tail (a marker line says where it was cut).
/// A write error (disk full) is warned about once per process and
/// otherwise ignored.
pub struct LogSink {
    file: Arc<Mutex<LogFile>>,
    /// The last line written is unfinished, and came from this stream.
    open_line: Option<Stream>,
    buf: Vec<u8>,
}

/// The file behind every writer of one log, and how long it is.
struct LogFile {
    file: File,
    len: u64,
    cap: u64,
}

use crate::settings::config::MIN_LOG_SIZE;
const COPY_CHUNK: usize = 64 * 1024;

static LOG_WRITE_WARNED: AtomicBool = AtomicBool::new(false);

impl LogFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.len + data.len() as u64 <= self.cap {
            self.file.write_all_at(data, self.len)?;
            self.len += data.len() as u64;
            return Ok(());
        }
        self.cut(data)
    }

    /// Keeps the newest quarter of the cap of (file + data), from a line
    /// start where one is near, behind a marker line. (A quarter, not a
    /// half: each cut copies what it keeps, so a task printing gigabytes
    /// pays a third more log writes, not twice as many.)
    fn cut(&mut self, data: &[u8]) -> io::Result<()> {
        let keep = self.cap / 4;
        let total = self.len + data.len() as u64;
        let mut from = total - keep;
        if from < self.len {
            let mut probe = [0u8; 4096];
            let n = self.file.read_at(&mut probe, from)?;
            if let Some(p) = probe[..n].iter().position(|&b| b == b'\n') {
                from += p as u64 + 1;
            }
        }
        let marker = format!(
            "{} [runner] --- {from} earlier bytes cut here (max_log_size {}) ---\n",
            crate::util::timestamp(SystemTime::now()),
            self.cap
        );
        self.file.write_all_at(marker.as_bytes(), 0)?;
        let mut pos = marker.len() as u64;
        let mut chunk = vec![0u8; COPY_CHUNK];
        let mut src = from;
        while src < self.len {
            let want = ((self.len - src) as usize).min(COPY_CHUNK);
            let n = self.file.read_at(&mut chunk[..want], src)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&chunk[..n], pos)?;
            src += n as u64;
            pos += n as u64;
        }
        let skip = from.saturating_sub(self.len) as usize;
        let rest = data.get(skip..).unwrap_or_default();
        self.file.write_all_at(rest, pos)?;
        pos += rest.len() as u64;
        self.file.set_len(pos)?;
        self.len = pos;
        Ok(())
    }
}

impl LogSink {
    /// A sink writing to `file` (its end, then on), capped at `cap` bytes.
    pub fn new(file: File, cap: u64) -> LogSink {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let log = LogFile { file, len, cap: cap.max(MIN_LOG_SIZE) };
        LogSink { file: Arc::new(Mutex::new(log)), open_line: None, buf: Vec::new() }
    }

    /// Another writer on the same file, with its own line state.
    pub fn share(&self) -> LogSink {
        LogSink { file: Arc::clone(&self.file), open_line: None, buf: Vec::new() }
    }

    /// A line from runner itself.
    pub fn note(&self, text: &str) {
        let line = format!("{} [runner] {text}\n", crate::util::timestamp(SystemTime::now()));
        self.append(line.as_bytes());
    }

    fn append(&self, data: &[u8]) {
        let written = match self.file.lock() {
            Ok(mut f) => f.append(data),
            Err(_) => Ok(()),
        };
        if let Err(e) = written
            && !LOG_WRITE_WARNED.swap(true, Ordering::Relaxed)
        {
            crate::logging::warn(&format!("cannot write task log: {e}; the chain goes on"));
        }
    }
}

impl Sink for LogSink {
    fn write(&mut self, stream: Stream, data: &[u8]) {
        let stamp = crate::util::timestamp(SystemTime::now());
        let mark: &[u8] = if stream == Stream::Err { b" [err] " } else { b" [out] " };
        self.buf.clear();
        // The other stream's unfinished line ends here; this one continues
        // its own unfinished line.
        if self.open_line.is_some_and(|s| s != stream) {
            self.buf.push(b'\n');
            self.open_line = None;
        }
        for line in lines(data) {
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

/// Spare output buffers: a chain of quick tasks reuses them instead of
/// allocating and zeroing one per task.
static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
const BUFFER_SIZE: usize = 128 * 1024;

pub fn take_buffer() -> Vec<u8> {
    BUFFERS.lock().ok().and_then(|mut b| b.pop()).unwrap_or_else(|| vec![0u8; BUFFER_SIZE])
}

pub fn give_buffer(buf: Vec<u8>) {
    if let Ok(mut b) = BUFFERS.lock()
        && b.len() < 4
    {
        b.push(buf);
    }
}

/// Reads one chunk from a ready stream and hands it to every sink. Returns
/// whether the stream is still open.
pub fn forward_chunk(reader: &mut dyn Read, stream: Stream, buf: &mut [u8], sinks: &mut [Box<dyn Sink>]) -> bool {
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
/// Copies whichever of the two streams are given to the sinks until both
/// reach end of file, or until `wake` rings: then what is still open goes
/// to the shared drain.
fn pump_some(
    mut out: Option<ChildStdout>,
    mut err: Option<ChildStderr>,
    mut sinks: Vec<Box<dyn Sink>>,
    wake: Option<OwnedFd>,
    label: &str,
) {
    let mut buf = take_buffer();
    while out.is_some() || err.is_some() {
        let Ok(ready) = super::os::poll_ready(
            [out.as_ref().map(AsFd::as_fd), err.as_ref().map(AsFd::as_fd), wake.as_ref().map(AsFd::as_fd)],
            None,
        ) else {
            break;
        };
        if ready[2] {
            give_buffer(buf);
            leak(label, out, err, sinks);
            return;
        }
        if ready[0]
            && let Some(o) = &mut out
            && !forward_chunk(o, Stream::Out, &mut buf, &mut sinks)
        {
            out = None;
        }
        if ready[1]
            && let Some(e) = &mut err
            && !forward_chunk(e, Stream::Err, &mut buf, &mut sinks)
        {
            err = None;
        }
    }
    give_buffer(buf);
    sinks.iter_mut().for_each(|s| s.finish());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sink_marks_streams_and_survives_a_full_disk() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.log");
        let mut log = LogSink::new(
            std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?,
            1 << 20,
        );
        log.write(Stream::Out, b"one\ntw");
        log.write(Stream::Err, b"err\n");
        log.write(Stream::Out, b"o\n");
        log.finish();
        let text = std::fs::read_to_string(&path)?;
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').map_or("", |(_, rest)| rest)).collect();
        assert_eq!(lines, ["[out] one", "[out] tw", "[err] err", "[out] o"]);

        let mut full = LogSink::new(std::fs::OpenOptions::new().write(true).open("/dev/full")?, 1 << 20);
        full.write(Stream::Out, b"no space\n");
        full.write(Stream::Out, b"still no space\n");
        assert!(LOG_WRITE_WARNED.load(Ordering::Relaxed));
        Ok(())
    }

    #[test]
    fn log_is_capped_keeping_the_tail() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.log");
        let mut log = LogSink::new(
            std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?,
            8192,
        );
        for i in 0..2000 {
            log.write(Stream::Out, format!("line {i}\n").as_bytes());
        }
        log.finish();
        let text = std::fs::read_to_string(&path)?;
        assert!(text.len() <= 8192, "{}", text.len());
        let first = text.lines().next().unwrap_or_default();
        assert!(first.contains("earlier bytes cut here"), "{first}");
        assert!(text.ends_with("[out] line 1999\n"));
        // Every kept line is whole.
        assert!(text.lines().skip(1).all(|l| l.contains("[out] line ")));
        Ok(())
    }
}
