//! The state directory itself (where it is, is `settings`'s): creating it (0700), refusing it
//! as root when another user could steer it (exit 77), the chain lock, and
//! reading and atomically replacing files in it.
//!
//! Every file inside is opened relative to one open handle of the directory
//! and without following symlinks (`O_NOFOLLOW`), so a symlink planted in
//! the directory never makes runner write or read somewhere else. I/O
//! failures that keep runner from keeping state are exit 74. This module
//! knows nothing of what the files hold.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::{Error, Result};

pub const LOCK_FILE: &str = "lock";
/// Prefix of the temporary files of atomic replacements.
const TEMP_PREFIX: &str = ".state.";
/// Largest state file runner reads (a journal is far smaller).
const MAX_READ: u64 = 256 << 20;

/// An open state directory.
pub struct StateDir {
    pub path: PathBuf,
    fd: OwnedFd,
}

fn io_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::State(format!("{}: {what}: {e}", path.display()))
}

impl StateDir {
    /// Creates the directory (and parents) with mode 0700 and opens it. As
    /// root, refuses (exit 77) a directory that another user could steer:
    /// it, or a directory on the way to it, owned by another user or
    /// writable by group or others (a sticky directory is fine when the
    /// entry in it is root's).
    pub fn create(path: &Path) -> Result<StateDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| io_error(path, "cannot create state directory", e))?;
        if rustix::process::geteuid().is_root() {
            let problems = crate::settings::safety::check_path(path);
            if !problems.is_empty() {
                return Err(Error::Unsafe(format!(
                    "{}: refusing the state directory: another user could steer it: {}; \
                     fix it (chown root:root, chmod 0700 the directory and go-w its parents) \
                     or choose another --state-dir",
                    path.display(),
                    crate::settings::safety::describe(path, &problems)
                )));
            }
        }
        let dir = StateDir::open(path).map_err(|e| io_error(path, "cannot open state directory", e))?;
        let meta = rustix::fs::fstat(&dir.fd).map_err(|e| io_error(path, "cannot open state directory", e))?;
        if meta.st_mode & 0o077 != 0 {
            rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(0o700))
                .map_err(|e| io_error(path, "cannot make the state directory private", e))?;
        }
        Ok(dir)
    }

    /// Opens an existing directory (for reading: `--status`, `--dry-run`).
    pub fn open(path: &Path) -> io::Result<StateDir> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(StateDir { path: path.to_path_buf(), fd })
    }

    /// Opens `name` in the directory, never through a symlink.
    pub fn open_file(&self, name: &str, flags: OFlags, mode: u32) -> io::Result<File> {
        let fd =
            rustix::fs::openat(&self.fd, name, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// The bytes of regular file `name`; `None` when it does not exist.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let mut file = match self.open_file(name, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        if meta.len() > MAX_READ {
            return Err(io::Error::other(format!("larger than {} MiB", MAX_READ >> 20)));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// Replaces `name` with `bytes` atomically (a temporary file in the
    /// same directory, then a rename). With `durable`, the data and the
    /// directory are synced, so the new content survives power loss.
    pub fn replace(&self, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
        let tmp = format!("{TEMP_PREFIX}{name}.{}.{:08x}", std::process::id(), rand::random::<u32>());
        let written = (|| {
            let mut f = self.open_file(&tmp, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, 0o600)?;
            f.write_all(bytes)?;
            if durable {
                f.sync_data()?;
            }
            rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return written;
        }
        if durable {
            self.sync()?;
        }
        Ok(())
    }

    /// Syncs the directory (its entries: renames and new files).
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(io::Error::from)
    }

    /// Renames `name` to `name.<suffix>-<pid>` (a file that does not load is
    /// kept for a person to look at, never deleted). Returns the new name.
    pub fn move_aside(&self, name: &str, suffix: &str) -> io::Result<String> {
        let aside = format!("{name}.{suffix}-{}", std::process::id());
        rustix::fs::renameat(&self.fd, name, &self.fd, aside.as_str())?;
        Ok(aside)
    }

    /// Removes temporary files a runner killed mid-write left behind (only
    /// the lock holder writes them, so with the lock held they are stale).
    pub fn remove_stale_temp_files(&self) {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            if name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                let _ = rustix::fs::unlinkat(&self.fd, name.as_os_str(), AtFlags::empty());
            }
        }
    }

    /// A subdirectory (created 0700 if missing), opened without following
    /// a symlink.
    pub fn subdir(&self, name: &str) -> io::Result<OwnedFd> {
        subdir(self.fd.as_fd(), name)
    }

    /// Takes the chain lock. Without `wait`, a held lock is exit 75 naming
    /// the holder's pid and start time.
    pub fn lock(&self, wait: bool) -> Result<Lock> {
        let lock_err = |e: &dyn std::fmt::Display| io_error(&self.path.join(LOCK_FILE), "cannot lock", e);
        let mut file = self
            .open_file(LOCK_FILE, OFlags::RDWR | OFlags::CREATE, 0o600)
            .map_err(|e| io_error(&self.path.join(LOCK_FILE), "cannot open lock", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) if wait => {
                crate::logging::info(&format!("waiting for the chain lock ({})", self.holder()));
                // Poll the lock so that a signal to runner still ends the wait.
                loop {
                    if let Some(sig) = crate::process::signals::sleep(std::time::Duration::from_millis(100)) {
                        return Err(Error::Cancelled(sig));
                    }
                    match file.try_lock() {
                        Ok(()) => break,
                        Err(std::fs::TryLockError::WouldBlock) => {}
                        Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(&e)),
                    }
                }
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked(format!(
                    "another runner holds this chain's lock ({}); use --wait to wait for it",
                    self.holder()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(&e)),
        }
        let who =
            format!("pid {} since {}\n", std::process::id(), crate::util::timestamp(std::time::SystemTime::now()));
        let _ = file.set_len(0).and_then(|_| file.write_all(who.as_bytes()));
        Ok(Lock { _file: file })
    }

    /// "held by pid N since T", as the holder wrote it into the lock file.
    pub fn holder(&self) -> String {
        let text = self.read(LOCK_FILE).ok().flatten().unwrap_or_default();
        match String::from_utf8_lossy(&text).trim() {
            "" => self.path.join(LOCK_FILE).display().to_string(),
            who => format!("held by {who}"),
        }
    }

    /// Whether a runner holds the chain lock now, asked without taking it
    /// (taking it, even shared, could make a runner starting at that
    /// instant fail with 75): the kernel's list of flock locks is searched
    /// for the lock file. `None` when that cannot be told.
    pub fn locked(&self) -> Option<bool> {
        let meta = match rustix::fs::statat(&self.fd, LOCK_FILE, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(m) => m,
            Err(rustix::io::Errno::NOENT) => return Some(false),
            Err(_) => return None,
        };
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        let dev = meta.st_dev;
        let want = format!("{:02x}:{:02x}:{}", rustix::fs::major(dev), rustix::fs::minor(dev), meta.st_ino);
        Some(locks.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF"
            f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str())
        }))
    }
}

/// `name` in `dir`, created 0700 if missing, opened as a directory without
/// following a symlink.
pub fn subdir(dir: std::os::fd::BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(fd)
}

/// The chain lock: an OS lock (flock) on `state_dir/lock`, released by the
/// kernel when runner dies, never inherited by tasks (close-on-exec).
pub struct Lock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn replace_never_follows_a_symlink() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep")?;
        let state = tmp.path().join("state");
        std::fs::create_dir(&state)?;
        std::os::unix::fs::symlink(&victim, state.join("x"))?;
        let dir = StateDir::open(&state)?;
        assert!(dir.read("x").is_err());
        dir.replace("x", b"new", true)?;
        assert_eq!(std::fs::read(&victim)?, b"keep");
        assert_eq!(std::fs::read(state.join("x"))?, b"new");
        Ok(())
    }
}
