//! Task discovery, the file-name filters, task names and the config sections
//! that name a task. It lists and stats; it never opens or runs a task.
//!
//! Discovery follows run-parts: the entries of TASKDIR in byte order of their
//! file names, without hidden files, editor backups and packaging leftovers,
//! without directories and without the halt task. Names follow SPEC §3.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::settings::ini::{Ini, Section};

/// Suffixes of files that are never tasks (nor include files).
const IGNORED_SUFFIXES: &[&str] =
    &["~", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".dpkg-tmp", ".rpmsave", ".rpmnew", ".swp", ".bak"];

/// Why a directory entry is not part of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Hidden, backup or packaging leftover: skipped silently.
    Filtered,
    Directory,
    HaltTask,
    RebootTask,
    NotExecutable,
    /// `run = once` / `once-per-boot` marker already set.
    AlreadyRan(&'static str),
}

impl SkipReason {
    pub fn describe(&self) -> String {
        match self {
            SkipReason::Filtered => "ignored file name (hidden, backup or package leftover)".into(),
            SkipReason::Directory => "directory".into(),
            SkipReason::HaltTask => "halt task".into(),
            SkipReason::RebootTask => "reboot task".into(),
            SkipReason::NotExecutable => "not executable and no interpreter applies".into(),
            SkipReason::AlreadyRan(m) => format!("run = {m}: already succeeded"),
        }
    }
}

/// A directory entry left out of the chain, and why.
pub type Skipped = (OsString, SkipReason);

/// One task of the chain.
#[derive(Clone, Debug)]
pub struct Task {
    /// The file name for messages, JSON and journal keys: the name itself
    /// when it is UTF-8, else with each invalid byte written as `\xNN`
    /// (distinct names stay distinct).
    pub file_str: String,
    /// The file name's bytes, kept only when they are not UTF-8 (a chain
    /// of 10,000 tasks keeps one copy of each name, not two).
    raw: Option<OsString>,
    /// The name per SPEC §3 (`3-check-ami.sh` → `check-ami`).
    pub name: String,
    /// Whether the file has an execute bit (broken symlinks count as
    /// executable: they fail at spawn time and are retried).
    pub executable: bool,
}

impl Task {
    /// The file name as found in TASKDIR (may be non-UTF-8).
    pub fn file(&self) -> &OsStr {
        self.raw.as_deref().unwrap_or(OsStr::new(&self.file_str))
    }

    /// The task's path in `dir` (its task directory).
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file())
    }
}

/// Whether a file name is skipped by the name filters.
pub fn is_ignored_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.is_empty() || b[0] == b'.' || IGNORED_SUFFIXES.iter().any(|s| b.ends_with(s.as_bytes()))
}

/// The entries of `dir` that pass the name filters, in byte order.
pub fn list_dir(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if !is_ignored_name(&name) {
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Reads TASKDIR. Returns the candidate tasks in file-name order and the
/// entries left out, with why. Filtering non-executable files needs the
/// per-task interpreter, so it happens later (see [`Task::executable`]).
pub fn discover(dir: &Path, halt_task: &str, reboot_task: &str) -> io::Result<(Vec<Task>, Vec<Skipped>)> {
    let mut all: Vec<OsString> =
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    all.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    for file in all {
        if is_ignored_name(&file) {
            skipped.push((file, SkipReason::Filtered));
            continue;
        }
        if file.as_bytes() == halt_task.as_bytes() {
            skipped.push((file, SkipReason::HaltTask));
            continue;
        }
        if file.as_bytes() == reboot_task.as_bytes() {
            skipped.push((file, SkipReason::RebootTask));
            continue;
        }
        let path = dir.join(&file);
        let executable = match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                skipped.push((file, SkipReason::Directory));
                continue;
            }
            Ok(m) => m.permissions().mode() & 0o111 != 0,
            Err(_) => true,
        };
        let file_str = display_name(&file);
        let name = task_name(&file_str);
        let raw = (file.to_str() != Some(file_str.as_str())).then_some(file);
        tasks.push(Task { file_str, raw, name, executable });
    }
    Ok((tasks, skipped))
}

/// A file name as text: UTF-8 as is, each invalid byte as `\xNN`.
pub fn display_name(name: &OsStr) -> String {
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `3-check-ami.sh` → `check-ami`, `10_clobber` → `clobber`,
/// `buildbot.py` → `buildbot`: drop a leading run of digits followed by `-`
/// or `_`, then the last extension.
pub fn task_name(file: &str) -> String {
    let digits = file.bytes().take_while(u8::is_ascii_digit).count();
    let rest = match file.as_bytes().get(digits) {
        Some(b'-' | b'_') if digits > 0 => &file[digits + 1..],
        _ => file,
    };
    let stem = match rest.rfind('.') {
        Some(0) | None => rest,
        Some(i) => &rest[..i],
    };
    if stem.is_empty() { file.to_string() } else { stem.to_string() }
}

/// The name mozilla/build-runner derived (`3-check-ami.sh` → `checkami`),
/// still accepted as a section name, with a warning.
pub fn reference_name(file: &str) -> String {
    let parts: Vec<&str> = file.split('-').collect();
    let joined = parts[1..].concat();
    let name = if joined.is_empty() { file.to_string() } else { joined };
    let parts: Vec<&str> = name.split('.').collect();
    let joined = parts[..parts.len() - 1].concat();
    if joined.is_empty() { name } else { joined }
}

/// Which tasks a word (a section name or a `depends_on` entry) refers to.
pub struct NameIndex {
    by_file: HashMap<String, usize>,
    by_name: HashMap<String, Vec<usize>>,
    by_reference: HashMap<String, Vec<usize>>,
}

/// What a word resolves to.
pub enum Lookup {
    One(usize),
    /// A name shared by several tasks: ambiguous.
    Shared(Vec<usize>),
    None,
}

impl NameIndex {
    pub fn new<'t>(tasks: impl IntoIterator<Item = &'t Task>) -> NameIndex {
        let mut idx = NameIndex { by_file: HashMap::new(), by_name: HashMap::new(), by_reference: HashMap::new() };
        for (i, t) in tasks.into_iter().enumerate() {
            idx.by_file.insert(t.file_str.clone(), i);
            idx.by_name.entry(t.name.clone()).or_default().push(i);
            let r = reference_name(&t.file_str);
            if r != t.name && r != t.file_str {
                idx.by_reference.entry(r).or_default().push(i);
            }
        }
        idx
    }

    /// A file name, else a task name.
    pub fn lookup(&self, word: &str) -> Lookup {
        if let Some(&i) = self.by_file.get(word) {
            return Lookup::One(i);
        }
        match self.by_name.get(word).map(Vec::as_slice) {
            Some([i]) => Lookup::One(*i),
            Some(many) => Lookup::Shared(many.to_vec()),
            None => Lookup::None,
        }
    }

    /// For every task, the sections that configure it, most specific first
    /// (file name, name, reference name). Errors for sections whose name is
    /// shared by several tasks; warnings for reference names.
    pub fn sections<'a>(
        &self,
        ini: &'a Ini,
        tasks: &[Task],
        diags: &mut crate::settings::config::Diags,
    ) -> Vec<Vec<&'a Section>> {
        let mut out: Vec<Vec<&Section>> = vec![Vec::new(); tasks.len()];
        let mut by_name: Vec<Vec<&Section>> = vec![Vec::new(); tasks.len()];
        let mut by_ref: Vec<Vec<&Section>> = vec![Vec::new(); tasks.len()];
        for s in &ini.sections {
            let at = s.loc.map(|l| ini.at(l)).unwrap_or_default();
            if let Some(&i) = self.by_file.get(&s.name) {
                out[i].push(s);
                continue;
            }
            if let Some(ids) = self.by_name.get(&s.name) {
                if ids.len() > 1 {
                    diags.error(
                        &at,
                        format!(
                            "section [{}] is ambiguous: it names {}; use the file name as the section name",
                            s.name,
                            self.files(|i| tasks[i].file_str.as_str(), ids)
                        ),
                    );
                } else {
                    by_name[ids[0]].push(s);
                }
                continue;
            }
            if let Some(ids) = self.by_reference.get(&s.name) {
                for &i in ids {
                    diags.warn(
                        &at,
                        format!(
                            "section [{}] uses mozilla/build-runner's mangled name of {}; rename it to [{}]",
                            s.name, tasks[i].file_str, tasks[i].name
                        ),
                    );
                    by_ref[i].push(s);
                }
            }
        }
        for (i, o) in out.iter_mut().enumerate() {
            o.append(&mut by_name[i]);
            o.append(&mut by_ref[i]);
        }
        out
    }

    pub fn files<'t>(&self, file: impl Fn(usize) -> &'t str, ids: &[usize]) -> String {
        ids.iter().map(|&i| file(i)).collect::<Vec<_>>().join(" and ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (file, name) in [
            ("3-check-ami.sh", "check-ami"),
            ("10_clobber", "clobber"),
            ("buildbot.py", "buildbot"),
            ("buildbot", "buildbot"),
            ("a.b.c", "a.b"),
            ("10-", "10-"),
            ("abc-1", "abc-1"),
            ("-x", "-x"),
            ("7", "7"),
        ] {
            assert_eq!(task_name(file), name, "{file}");
        }
    }

    #[test]
    fn display_names_keep_invalid_bytes_apart() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(display_name(OsStr::new("10-café")), "10-café");
        assert_eq!(display_name(OsStr::from_bytes(b"10-caf\xe9")), "10-caf\\xe9");
        assert_ne!(display_name(OsStr::from_bytes(b"a\xe9")), display_name(OsStr::from_bytes(b"a\xe8")));
    }

    #[test]
    fn reference_names() {
        assert_eq!(reference_name("3-check-ami.sh"), "checkami");
        assert_eq!(reference_name("0-check_ami.py"), "check_ami");
        assert_eq!(reference_name("buildbot.py"), "buildbot");
        assert_eq!(reference_name("10_clobber"), "10_clobber");
    }

    #[test]
    fn ignored_names() {
        for n in [
            ".hidden",
            "a~",
            "a.dpkg-old",
            "a.dpkg-new",
            "a.dpkg-dist",
            "a.dpkg-tmp",
            "a.rpmsave",
            "a.rpmnew",
            "a.swp",
            "a.bak",
        ] {
            assert!(is_ignored_name(OsStr::new(n)), "{n}");
        }
        for n in ["a", "a.sh", "bak", "a.bak.sh"] {
            assert!(!is_ignored_name(OsStr::new(n)), "{n}");
        }
    }
}
