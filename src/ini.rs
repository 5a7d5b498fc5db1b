//! The INI dialect of Python's RawConfigParser, on top of rust-ini.
//!
//! rust-ini does the parsing (configured for raw values: no quotes, no
//! escapes, indented continuation lines). This module adds what the dialect
//! needs beyond it: several files merged in order (later wins), repeated
//! sections merged, `[DEFAULT]` as fallback for every section, keys outside a
//! section rejected, invalid UTF-8 reported by line, and the file and line of
//! every key so that a bad value can be named precisely.

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

/// A private-use character placed after a backslash at the end of a line
/// while rust-ini parses (see [`Ini::merge_bytes`]).
const GUARD: char = '\u{E000}';
const BACKSLASH_EOL_GUARDED: &str = "\\\u{E000}\n";

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
        let bytes = std::fs::read(path).map_err(|e| Diag::new(path.display(), format!("cannot read: {e}")))?;
        self.merge_bytes(path, &bytes)
    }

    /// Merges `bytes`, read from `path`, over what is already loaded.
    pub fn merge_bytes(&mut self, path: &Path, bytes: &[u8]) -> Result<(), Diag> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
            Diag::new(format!("{}:{line}", path.display()), "invalid UTF-8")
        })?;
        let opt = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: true,
            enabled_preserve_key_leading_whitespace: false,
        };
        let source = normalize(text).map_err(|(line, msg)| Diag::new(format!("{}:{line}", path.display()), msg))?;
        let parsed = ini::Ini::load_from_str_opt(&source, opt)
            .map_err(|e| Diag::new(format!("{}:{}", path.display(), e.line.max(1)), e.msg.to_string()))?;
        let lines = LineIndex::new(text);
        let file = self.files.len();
        self.files.push(path.to_path_buf());
        for (name, props) in parsed.iter() {
            let Some(name) = name else {
                if let Some((key, _)) = props.iter().next() {
                    let line = lines.key_line(None, key).unwrap_or(1);
                    return Err(Diag::new(
                        format!("{}:{line}", path.display()),
                        format!("key '{key}' comes before any [section] header"),
                    ));
                }
                continue;
            };
            let section = self.section_mut(name, Loc { file, line: lines.section_line(name).unwrap_or(1) });
            for (key, value) in props.iter() {
                let line = lines.key_line(Some(name), key).unwrap_or(1);
                let value = if value.contains(GUARD) { value.replace(GUARD, "") } else { value.to_string() };
                section.set(Entry { key: key.to_string(), value, loc: Loc { file, line } });
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

/// Brings RawConfigParser's line rules to rust-ini, line by line (line
/// numbers are kept):
/// - a line that is neither blank, a comment, a section header, an indented
///   continuation nor `key = value` / `key: value` is an error (rust-ini would
///   silently glue it to the next key);
/// - text after a section header's `]` is ignored (rust-ini rejects it);
/// - a line that ends in a backslash keeps it: rust-ini would join it to the
///   next line even with escapes off, so a [`GUARD`] follows the backslash
///   while rust-ini parses and is removed from the values afterwards.
fn normalize(text: &str) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len() + 16);
    for (n, raw) in text.split_inclusive('\n').enumerate() {
        let body = raw.strip_suffix('\n').unwrap_or(raw);
        let body = body.strip_suffix('\r').unwrap_or(body);
        let trimmed = body.trim();
        let continuation_or_comment =
            trimmed.is_empty() || trimmed.starts_with(['#', ';']) || body.starts_with([' ', '\t']);
        if !continuation_or_comment && let Some(rest) = trimmed.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err((n + 1, "section header without a closing ']'".into()));
            };
            out.push('[');
            out.push_str(&rest[..end]);
            out.push_str("]\n");
            continue;
        }
        if !continuation_or_comment && !trimmed.contains(['=', ':']) {
            return Err((n + 1, format!("expected 'key = value' or 'key: value', found '{trimmed}'")));
        }
        match raw.strip_suffix("\\\n") {
            Some(head) => {
                out.push_str(head);
                out.push_str(BACKSLASH_EOL_GUARDED);
            }
            None => out.push_str(raw),
        }
    }
    Ok(out)
}

/// Line numbers of section headers and keys, following the same line rules
/// as the configured rust-ini parser (last assignment wins).
struct LineIndex {
    /// Section → line of its first header.
    sections: HashMap<String, usize>,
    /// (section, key) → line of its last assignment.
    keys: HashMap<(Option<String>, String), usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut idx = LineIndex { sections: HashMap::new(), keys: HashMap::new() };
        let mut section: Option<String> = None;
        let mut in_value = false;
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let indented = raw.starts_with([' ', '\t']);
            if indented && in_value {
                continue;
            }
            if trimmed.starts_with(['#', ';']) {
                in_value = false;
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest.split(']').next().unwrap_or("").trim().to_string();
                idx.sections.entry(name.clone()).or_insert(line_no);
                section = Some(name);
                in_value = false;
                continue;
            }
            if let Some(pos) = trimmed.find(['=', ':']) {
                let key = trimmed[..pos].trim().to_string();
                idx.keys.insert((section.clone(), key), line_no);
                in_value = true;
            }
        }
        idx
    }

    fn section_line(&self, name: &str) -> Option<usize> {
        self.sections.get(name).copied()
    }

    fn key_line(&self, section: Option<&str>, key: &str) -> Option<usize> {
        self.keys.get(&(section.map(String::from), key.to_string())).copied()
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
        assert_eq!(load("[a\nx = 1\n").map(|_| ()), Err("t.cfg:1: section header without a closing ']'".to_string()));
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
