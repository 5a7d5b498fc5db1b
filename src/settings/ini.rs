//! The INI dialect of Python 2.7's RawConfigParser (with `optionxform =
//! str`), which mozilla/build-runner used, on top of rust-ini.
//!
//! RawConfigParser's line rules are not rust-ini's (inline ` ;` comments,
//! `rem` lines, `""`, comments and blank lines inside continued values, an
//! indented line after a header is an error, nothing is trimmed but ASCII
//! white space). So [`canonicalize`] reads the file line by line by
//! RawConfigParser's rules and writes each option as one line of rust-ini
//! text with its value already joined and escaped; rust-ini then parses
//! that (escapes on, quotes off) into sections and keys. Line numbers are
//! kept: line N of the canonical text is line N of the file.
//!
//! This module also merges several files in order (later wins), merges
//! repeated sections, keeps `[DEFAULT]` as the fallback of every section,
//! reports invalid UTF-8 by line, and remembers the file and line of every
//! key so that a bad value can be named precisely. It never quotes a line of
//! `[env]` or `[DEFAULT]` in an error (secrets live there).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::Diag;

/// Where a key was set: index into [`Ini::files`] and a 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub file: usize,
    pub line: usize,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub loc: Loc,
}

#[derive(Clone, Debug, Default)]
pub struct Section {
    pub name: String,
    /// Keys in first-seen order; a later assignment replaces the value.
    pub entries: Vec<Entry>,
    /// Where the section header first appeared.
    pub loc: Option<Loc>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn set(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.key == entry.key) {
            Some(old) => *old = entry,
            None => self.entries.push(entry),
        }
    }
}

pub const DEFAULT_SECTION: &str = "DEFAULT";

/// A private-use character put at either end of a name or value whose end
/// rust-ini would trim (Unicode white space, which RawConfigParser keeps),
/// and taken off again after parsing (see [`push_escaped`]).
const GUARD: char = '\u{E000}';

/// Merged contents of one or more INI files.
#[derive(Clone, Debug, Default)]
pub struct Ini {
    pub files: Vec<PathBuf>,
    pub sections: Vec<Section>,
    pub defaults: Section,
    /// Section name → index in `sections` (configs with thousands of task
    /// sections stay linear).
    by_name: HashMap<String, usize>,
}

impl Ini {
    /// Reads `path` and merges it over what is already loaded.
    /// The error is one line naming the file (and line).
    pub fn merge_file(&mut self, path: &Path) -> Result<(), Diag> {
        let bytes = read_config(path).map_err(|e| Diag::new(path.display(), format!("cannot read: {e}")))?;
        self.merge_bytes(path, &bytes)
    }

    /// Merges `bytes`, read from `path`, over what is already loaded.
    pub fn merge_bytes(&mut self, path: &Path, bytes: &[u8]) -> Result<(), Diag> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
            Diag::new(format!("{}:{line}", path.display()), "invalid UTF-8")
        })?;
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let opt = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: true,
            enabled_indented_mutiline_value: false,
            enabled_preserve_key_leading_whitespace: false,
        };
        let canonical =
            canonicalize(text).map_err(|(line, msg)| Diag::new(format!("{}:{line}", path.display()), msg))?;
        let parsed = ini::Ini::load_from_str_opt(&canonical.text, opt)
            .map_err(|e| Diag::new(format!("{}:{}", path.display(), e.line.max(1)), e.msg.to_string()))?;
        let lines = canonical.lines;
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        for (name, props) in parsed.iter() {
            // canonicalize never writes a key outside a section.
            let Some(name) = name.map(unguard) else { continue };
            let section = self.section_mut(name, Loc { file, line: lines.section_line(name).unwrap_or(1) });
            for (key, value) in props.iter() {
                let key = unguard(key);
                let line = lines.key_line(name, key).unwrap_or(1);
                section.set(Entry { key: key.to_string(), value: unguard(value).to_string(), loc: Loc { file, line } });
            }
        }
        Ok(())
    }

    fn section_mut(&mut self, name: &str, loc: Loc) -> &mut Section {
        if name == DEFAULT_SECTION {
            self.defaults.name = name.to_string();
            self.defaults.loc.get_or_insert(loc);
            return &mut self.defaults;
        }
        let idx = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                self.sections.push(Section { name: name.to_string(), entries: Vec::new(), loc: Some(loc) });
                self.by_name.insert(name.to_string(), self.sections.len() - 1);
                self.sections.len() - 1
            }
        };
        &mut self.sections[idx]
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        if name == DEFAULT_SECTION {
            return Some(&self.defaults);
        }
        self.by_name.get(name).map(|&i| &self.sections[i])
    }

    /// RawConfigParser's `get`: the section's own key, else `[DEFAULT]`'s,
    /// but only when the section exists.
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        let s = self.section(section)?;
        s.get(key).or_else(|| self.defaults.get(key))
    }

    /// `file:line` of a location, for messages.
    pub fn at(&self, loc: Loc) -> String {
        let file = self.files.get(loc.file).map(|p| p.display().to_string()).unwrap_or_default();
        format!("{file}:{}", loc.line)
    }
}

/// Largest config file runner reads.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The bytes of a config file: only a regular file of at most
/// [`MAX_CONFIG_BYTES`] (or `/dev/null`, an empty config), refused at once
/// otherwise. Opened non-blocking and
/// checked after opening, so that a FIFO, a device (`/dev/zero`) or a
/// directory, even one swapped in after a check, never hangs runner or
/// fills its memory.
pub fn read_config(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    // /dev/null (character device 1:3) reads as an empty config.
    if std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type())
        && std::os::unix::fs::MetadataExt::rdev(&meta) == libc::makedev(1, 3)
    {
        return Ok(Vec::new());
    }
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(std::io::Error::other(kind));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!("larger than {} MiB", MAX_CONFIG_BYTES >> 20)));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.by_ref().take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!("larger than {} MiB", MAX_CONFIG_BYTES >> 20)));
    }
    Ok(bytes)
}

/// Python 2's `str.isspace` for one character: ASCII white space only.
fn py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

/// The file as rust-ini text, and where each section and key was set.
struct Canonical {
    text: String,
    lines: LineIndex,
}

/// The option whose value continuation lines extend.
struct Pending {
    /// Index of its line in the output.
    line: usize,
    key: String,
    parts: Vec<String>,
}

/// Reads `text` by RawConfigParser's `_read` rules (Python 2.7), line by
/// line:
/// - blank lines, lines starting with `#` or `;`, and lines whose first
///   word is `rem` (any case, starting at column 0) are comments; neither
///   ends a continued value;
/// - a line starting with white space continues the last option's value
///   (stripped; not comment-stripped) when there is one since the last
///   section header; otherwise it is an error;
/// - `[name]` at column 0 starts a section (`name` as written, up to the
///   first `]`; the rest of the line is ignored);
/// - `key = value` / `key: value` (the key ends at the first `=` or `:`): a
///   `;` ends the value when the first `;` in it follows white space; the
///   value is stripped, and `""` is the empty string;
/// - anything else is an error naming its line, quoting at most 40
///   characters of it, and none of a line in `[env]` or `[DEFAULT]`.
///
/// Each option becomes one `key=value` line at the line of its key, with
/// the value joined by newlines and escaped; every other line becomes
/// blank, so line numbers stay the same.
fn canonicalize(text: &str) -> Result<Canonical, (usize, String)> {
    let mut out: Vec<String> = Vec::new();
    let mut lines = LineIndex { sections: HashMap::new(), keys: HashMap::new() };
    let mut section: Option<String> = None;
    let mut pending: Option<Pending> = None;
    let flush = |out: &mut Vec<String>, pending: &mut Option<Pending>| {
        if let Some(p) = pending.take() {
            let mut line = String::new();
            push_escaped(&mut line, &p.key, true);
            line.push('=');
            push_escaped(&mut line, &p.parts.join("\n"), false);
            out[p.line] = line;
        }
    };
    for (n, raw) in text.split('\n').enumerate() {
        out.push(String::new());
        let body = raw;
        let first = body.chars().next();
        if py_strip(body).is_empty() || matches!(first, Some('#' | ';')) {
            continue;
        }
        if matches!(first, Some('r' | 'R'))
            && body.split(py_space).next().is_some_and(|w| w.eq_ignore_ascii_case("rem"))
        {
            continue;
        }
        if first.is_some_and(py_space)
            && section.is_some()
            && let Some(p) = pending.as_mut()
        {
            let value = py_strip(body);
            if !value.is_empty() {
                p.parts.push(value.to_string());
            }
            continue;
        }
        if let Some(rest) = body.strip_prefix('[')
            && let Some(end) = rest.find(']').filter(|&e| e > 0)
        {
            flush(&mut out, &mut pending);
            let name = &rest[..end];
            let mut line = String::from("[");
            push_escaped(&mut line, name, false);
            line.push(']');
            out[n] = line;
            lines.sections.entry(name.to_string()).or_insert(n + 1);
            section = Some(name.to_string());
            continue;
        }
        let secret = matches!(section.as_deref(), Some("env" | DEFAULT_SECTION));
        let split = body.find(['=', ':']).filter(|_| !first.is_some_and(|c| py_space(c) || c == '=' || c == ':'));
        if first == Some('[') && split.is_none() {
            return Err((n + 1, "section header without a name and a closing ']'".into()));
        }
        let Some(current) = &section else {
            let what = match split {
                Some(pos) => format!("key {}", quote(&body[..pos], false)),
                None => quote(body, false),
            };
            return Err((n + 1, format!("{what} comes before any [section] header")));
        };
        let Some(pos) = split else {
            return Err((n + 1, format!("expected 'key = value' or 'key: value', found {}", quote(body, secret))));
        };
        let key = body[..pos].trim_end_matches(py_space);
        let mut value = body[pos + 1..].trim_start_matches(py_space);
        if let Some(semi) = value.find(';') {
            // RawConfigParser looks at optval[pos-1], which for a `;` at
            // the very start is the value's last character.
            let before = if semi == 0 { value.chars().next_back() } else { value[..semi].chars().next_back() };
            if before.is_some_and(py_space) {
                value = &value[..semi];
            }
        }
        let value = match py_strip(value) {
            "\"\"" => "",
            v => v,
        };
        flush(&mut out, &mut pending);
        lines.keys.entry(current.clone()).or_default().insert(key.to_string(), n + 1);
        pending = Some(Pending { line: n, key: key.to_string(), parts: vec![value.to_string()] });
    }
    flush(&mut out, &mut pending);
    Ok(Canonical { text: out.join("\n"), lines })
}

/// A line for an error message: at most 40 characters of it, quoted; or,
/// in a section that holds secrets, none of it.
fn quote(line: &str, secret: bool) -> String {
    if secret {
        return "a line that is not shown (it is in [env] or [DEFAULT])".into();
    }
    let line = py_strip(line);
    let shown: String = line.chars().take(40).collect();
    if shown.len() < line.len() { format!("'{shown}...'") } else { format!("'{shown}'") }
}

/// Writes a name or value as rust-ini reads it back with escapes on:
/// backslashes and line ends escaped, a key's first character escaped when
/// rust-ini would take it for a section or comment, and a [`GUARD`] at an
/// end that rust-ini would trim (white space Python keeps, or a guard
/// character itself, so that [`unguard`] can always tell them apart).
fn push_escaped(out: &mut String, s: &str, key: bool) {
    let trimmable = |c: char| c.is_whitespace() || c == GUARD;
    let (guard_start, guard_end) = (s.starts_with(trimmable), s.ends_with(trimmable));
    if guard_start {
        out.push(GUARD);
    }
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '[' | ';' | '#' if key && i == 0 => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    if guard_end {
        out.push(GUARD);
    }
}

/// Takes off the guards [`push_escaped`] put at the ends.
fn unguard(s: &str) -> &str {
    let s = s.strip_prefix(GUARD).unwrap_or(s);
    s.strip_suffix(GUARD).unwrap_or(s)
}

/// Where each section header first appeared and each key was last set.
struct LineIndex {
    /// Section → line of its first header.
    sections: HashMap<String, usize>,
    /// section → key → line of its last assignment.
    keys: HashMap<String, HashMap<String, usize>>,
}

impl LineIndex {
    fn section_line(&self, name: &str) -> Option<usize> {
        self.sections.get(name).copied()
    }

    fn key_line(&self, section: &str, key: &str) -> Option<usize> {
        self.keys.get(section)?.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Ini, String> {
        let mut ini = Ini::default();
        ini.merge_bytes(Path::new("t.cfg"), text.as_bytes()).map_err(|d| d.to_string())?;
        Ok(ini)
    }

    fn val<'a>(ini: &'a Ini, s: &str, k: &str) -> Option<&'a str> {
        ini.get(s, k).map(|e| e.value.as_str())
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn dialect() -> TestResult {
        let ini = load(
            "# comment\n; other comment\n[a]\nx = 1\ny: two words \nMixedCase = kept\nurl = http://h/#frag\n\
             multi = first\n  second\n\tthird\n[b]\nz=3\n[a]\nx = overridden\n",
        )?;
        assert_eq!(val(&ini, "a", "x"), Some("overridden"));
        assert_eq!(val(&ini, "a", "y"), Some("two words"));
        assert_eq!(val(&ini, "a", "MixedCase"), Some("kept"));
        assert_eq!(val(&ini, "a", "mixedcase"), None);
        assert_eq!(val(&ini, "a", "url"), Some("http://h/#frag"));
        assert_eq!(val(&ini, "a", "multi"), Some("first\nsecond\nthird"));
        assert_eq!(val(&ini, "b", "z"), Some("3"));
        assert_eq!(ini.get("a", "x").map(|e| e.loc.line), Some(14));
        assert_eq!(ini.get("a", "multi").map(|e| e.loc.line), Some(8));
        Ok(())
    }

    #[test]
    fn raw_values_keep_quotes_and_backslashes() -> TestResult {
        let ini = load("[a]\nq = \"quoted\" 'x'\nb = a\\tb\nv = %(other)s\n")?;
        assert_eq!(val(&ini, "a", "q"), Some("\"quoted\" 'x'"));
        assert_eq!(val(&ini, "a", "b"), Some("a\\tb"));
        assert_eq!(val(&ini, "a", "v"), Some("%(other)s"));
        Ok(())
    }

    #[test]
    fn backslash_at_end_of_line_is_kept_not_a_continuation() -> TestResult {
        let ini = load("[a]\nx = C:\\dir\\\ny = 1\nm = one \\\n  two\n")?;
        assert_eq!(val(&ini, "a", "x"), Some("C:\\dir\\"));
        assert_eq!(val(&ini, "a", "y"), Some("1"));
        assert_eq!(val(&ini, "a", "m"), Some("one \\\ntwo"));
        Ok(())
    }

    #[test]
    fn section_header_text_after_bracket_is_ignored() -> TestResult {
        let ini = load("[a] ; a comment\nx = 1\n[b]]\ny = 2\n")?;
        assert_eq!(val(&ini, "a", "x"), Some("1"));
        assert_eq!(val(&ini, "b", "y"), Some("2"));
        Ok(())
    }

    #[test]
    fn a_line_that_is_not_key_value_is_an_error() {
        assert_eq!(
            load("[a]\nx = 1\nlonely\ny = 2\n").map(|_| ()),
            Err("t.cfg:3: expected 'key = value' or 'key: value', found 'lonely'".to_string())
        );
        assert_eq!(
            load("[a\nx = 1\n").map(|_| ()),
            Err("t.cfg:1: section header without a name and a closing ']'".to_string())
        );
    }

    #[test]
    fn defaults_are_fallbacks_for_existing_sections() -> TestResult {
        let ini = load("[DEFAULT]\nd = 1\n[a]\nx = 2\n[b]\nd = 3\n")?;
        assert_eq!(val(&ini, "a", "d"), Some("1"));
        assert_eq!(val(&ini, "b", "d"), Some("3"));
        assert_eq!(val(&ini, "missing", "d"), None);
        assert_eq!(val(&ini, "DEFAULT", "d"), Some("1"));
        Ok(())
    }

    #[test]
    fn later_file_wins() -> TestResult {
        let mut ini = Ini::default();
        ini.merge_bytes(Path::new("1.cfg"), b"[a]\nx = 1\ny = 1\n").map_err(|d| d.to_string())?;
        ini.merge_bytes(Path::new("2.cfg"), b"[a]\nx = 2\n").map_err(|d| d.to_string())?;
        assert_eq!(val(&ini, "a", "x"), Some("2"));
        assert_eq!(ini.get("a", "x").map(|e| ini.at(e.loc)).as_deref(), Some("2.cfg:2"));
        assert_eq!(val(&ini, "a", "y"), Some("1"));
        Ok(())
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Ini::default().merge_bytes(Path::new("t.cfg"), b"[a]\nx = 1\n\xff\n").map(|_| ());
        assert_eq!(e.map_err(|d| d.to_string()), Err("t.cfg:3: invalid UTF-8".to_string()));
        let e = load("x = 1\n[a]\n").map(|_| ());
        assert_eq!(e, Err("t.cfg:1: key 'x' comes before any [section] header".to_string()));
    }
}
