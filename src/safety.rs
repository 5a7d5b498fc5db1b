//! The safety rule of SPEC §7: when runner runs as root, every file it would
//! execute or read configuration from — the task directory, each task, the
//! halt task, the config file, include files, a hook program given as a
//! path — and the directory holding it must be owned by root and not
//! writable by group or others, as sshd's StrictModes and cron demand.
//! Ancestors further up are not checked.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Diags;

/// Collects the insecure paths among those checked.
pub struct Safety {
    enabled: bool,
    allow: bool,
    seen: HashSet<PathBuf>,
}

impl Safety {
    /// Checks only when runner runs as root. With `allow`
    /// (`--allow-insecure`), problems are warnings instead of errors.
    pub fn new(allow: bool) -> Safety {
        Safety { enabled: rustix::process::geteuid().is_root(), allow, seen: HashSet::new() }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Checks `path` (following symlinks) and the directory holding it.
    pub fn file(&mut self, path: &Path, what: &str, diags: &mut Diags) {
        if !self.enabled {
            return;
        }
        self.one(path, what, diags);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            self.one(dir, "directory", diags);
        }
    }

    /// Checks a directory itself.
    pub fn dir(&mut self, path: &Path, what: &str, diags: &mut Diags) {
        if self.enabled {
            self.one(path, what, diags);
        }
    }

    fn one(&mut self, path: &Path, what: &str, diags: &mut Diags) {
        if !self.seen.insert(path.to_path_buf()) {
            return;
        }
        let Ok(meta) = std::fs::metadata(path) else { return };
        let mut why = Vec::new();
        if meta.uid() != 0 {
            why.push(format!("owned by uid {}, not root", meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            let who = match (meta.mode() & 0o020 != 0, meta.mode() & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "group",
                _ => "others",
            };
            why.push(format!("writable by {who} (mode {:04o})", meta.mode() & 0o7777));
        }
        if why.is_empty() {
            return;
        }
        let msg = format!("insecure {what}: {}", why.join(", "));
        if self.allow {
            diags.warn(path.display(), format!("{msg}; allowed by --allow-insecure"));
        } else {
            diags.error(path.display(), format!("{msg}; fix it or run with --allow-insecure"));
        }
    }
}
