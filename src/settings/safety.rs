//! The safety rule when runner runs as root: nothing it executes, reads
//! configuration from or keeps state in may be steerable by another user.
//!
//! A path is followed to its real file, through every symlink, component by
//! component from `/` (as sshd's StrictModes checks a path, applied to the
//! resolved path). Every directory on the way must be owned by root and not
//! writable by group or others — except a sticky directory (like `/tmp`)
//! whose next component is owned by root, since no one else can replace
//! that entry. The real file must be owned by root and not writable by
//! group or others. This module only reports; callers decide the exit code
//! (78 for what runner runs or reads, 77 for the state directory). It must
//! not open or read the files it checks.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::settings::config::Diags;

/// Symlinks followed on one path before giving up (Linux's MAXSYMLINKS).
const MAX_HOPS: usize = 40;

/// One reason a path is unsafe: the path checked and what is wrong where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The directory or file at fault.
    pub at: PathBuf,
    pub why: String,
}

/// Follows `path` to its real file and returns every problem on the way
/// (empty when it is safe). A path that does not exist is checked as far
/// as it goes.
pub fn check_path(path: &Path) -> Vec<Problem> {
    check_path_with(path, &mut HashSet::new())
}

/// [`check_path`], remembering in `clean` the directories reached without
/// a symlink and found safe, so that the next path below one of them (the
/// next task in the same directory) starts there: a chain of 10,000 tasks
/// costs one walk and a stat per task, not a walk per task.
pub fn check_path_with(path: &Path, clean: &mut HashSet<PathBuf>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let start = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let (mut cur, mut pending) = match start.parent().filter(|p| clean.contains(*p)) {
        Some(dir) => {
            (dir.to_path_buf(), start.file_name().map(|n| VecDeque::from([n.to_os_string()])).unwrap_or_default())
        }
        None => (PathBuf::from("/"), components(&start)),
    };
    // Whether every step so far was a clean, real directory.
    let mut straight = true;
    let mut hops = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&next) else {
            // The rest does not exist: the directory that would hold it is
            // still checked (someone could create it).
            if !clean.contains(&cur) {
                dir_problems(&cur, None, &mut problems);
            }
            return problems;
        };
        if !clean.contains(&cur) {
            // Reached without a symlink or a problem, and safe for any entry
            // (not merely thanks to the sticky bit): later walks may start
            // here.
            let before = problems.len();
            let safe_for_any = dir_problems(&cur, Some(meta.uid()), &mut problems);
            straight &= problems.len() == before;
            if safe_for_any && straight {
                clean.insert(cur.clone());
            }
        }
        if meta.file_type().is_symlink() {
            straight = false;
            hops += 1;
            let Ok(target) = std::fs::read_link(&next) else { return problems };
            if hops > MAX_HOPS {
                problems.push(Problem { at: next, why: "too many levels of symbolic links".into() });
                return problems;
            }
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            for c in components(&target).into_iter().rev() {
                pending.push_front(c);
            }
            continue;
        }
        cur = next;
    }
    if let Ok(meta) = std::fs::metadata(&cur) {
        let mut why = Vec::new();
        if meta.uid() != 0 {
            why.push(format!("owned by uid {}, not root", meta.uid()));
        }
        if let Some(w) = writable(meta.mode()) {
            why.push(w);
        }
        if !why.is_empty() {
            problems.push(Problem { at: cur, why: why.join(", ") });
        }
    }
    problems
}

/// The normal components of an absolute or relative path (`.` dropped,
/// `..` kept for the walk to apply).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Problems of `dir` as the holder of an entry owned by `entry_uid`
/// (`None`: an entry that does not exist yet). Whether `dir` is safe for
/// any entry: owned by root and writable by nobody else.
fn dir_problems(dir: &Path, entry_uid: Option<u32>, out: &mut Vec<Problem>) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else { return false };
    let mut why = Vec::new();
    if meta.uid() != 0 {
        why.push(format!("owned by uid {}, not root", meta.uid()));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    let writable = writable(meta.mode());
    let safe_for_any = why.is_empty() && writable.is_none();
    if let Some(w) = writable
        && !(sticky && entry_uid == Some(0))
    {
        why.push(if sticky { format!("{w}, and the entry in it is not owned by root") } else { w });
    }
    if !why.is_empty() && !out.iter().any(|p| p.at == dir) {
        out.push(Problem { at: dir.to_path_buf(), why: format!("directory {}", why.join(", ")) });
    }
    safe_for_any
}

/// "writable by group and others (mode 0777)", or `None`.
fn writable(mode: u32) -> Option<String> {
    if mode & 0o022 == 0 {
        return None;
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "group",
        _ => "others",
    };
    Some(format!("writable by {who} (mode {:04o})", mode & 0o7777))
}

/// What is wrong with a path, for one line: `problem; DIR: problem`.
pub fn describe(path: &Path, problems: &[Problem]) -> String {
    let list: Vec<String> = problems
        .iter()
        .map(|p| if p.at == path { p.why.clone() } else { format!("{}: {}", p.at.display(), p.why) })
        .collect();
    list.join("; ")
}

/// Collects the insecure paths among those runner will run or read.
pub struct Safety {
    enabled: bool,
    allow: bool,
    /// Directories already walked and found safe.
    clean: HashSet<PathBuf>,
}

impl Safety {
    /// Checks only when runner runs as root. With `allow`
    /// (`--allow-insecure`), problems are warnings instead of errors.
    pub fn new(allow: bool) -> Safety {
        Safety { enabled: rustix::process::geteuid().is_root(), allow, clean: HashSet::new() }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Checks `path` (a file or a directory) to its real file.
    pub fn file(&mut self, path: &Path, what: &str, diags: &mut Diags) {
        if !self.enabled {
            return;
        }
        let problems = check_path_with(path, &mut self.clean);
        if problems.is_empty() {
            return;
        }
        let msg = format!("insecure {what}: {}", describe(path, &problems));
        if self.allow {
            diags.warn(path.display(), format!("{msg}; allowed by --allow-insecure"));
        } else {
            diags.error(path.display(), format!("{msg}; fix it (chmod go-w, chown root) or run with --allow-insecure"));
        }
    }

    /// Checks a directory itself.
    pub fn dir(&mut self, path: &Path, what: &str, diags: &mut Diags) {
        self.file(path, what, diags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_bits() {
        assert_eq!(writable(0o755), None);
        assert_eq!(writable(0o775).as_deref(), Some("writable by group (mode 0775)"));
        assert_eq!(writable(0o1777).as_deref(), Some("writable by group and others (mode 1777)"));
    }

    #[test]
    fn components_keep_parent_dirs() {
        let c: Vec<OsString> = components(Path::new("/a/./b/../c")).into_iter().collect();
        assert_eq!(c, ["a", "b", "..", "c"]);
    }
}
