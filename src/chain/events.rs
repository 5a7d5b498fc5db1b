//! `--events FILE`: one JSON object per line for every run start and end,
//! task start and end, backoff sleep and halt, for log shippers. Each line
//! has `event` and `time` (RFC 3339) and is flushed as it is written.
//! Task events carry the hook stats object (SPEC §4), so the two schemas
//! are one by design. A write error never stops the chain.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::util::timestamp;

/// Where events go; nowhere when `--events` was not given.
#[derive(Default)]
pub struct Events {
    out: Option<Mutex<Box<dyn Write + Send>>>,
}

impl Events {
    /// `-` is stdout; a path is opened for appending (created 0600), never
    /// through a symlink.
    pub fn open(target: Option<&Path>) -> io::Result<Events> {
        let out: Box<dyn Write + Send> = match target {
            None => return Ok(Events::default()),
            Some(p) if p.as_os_str() == "-" => Box::new(io::stdout()),
            Some(p) => {
                use std::os::unix::fs::OpenOptionsExt;
                // Never through a symlink: as root, a planted link must not
                // make runner append to another file.
                Box::new(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                        .open(p)?,
                )
            }
        };
        Ok(Events { out: Some(Mutex::new(out)) })
    }

    /// Writes one event: `event`, `time`, then `fields` in order. Callers
    /// that build costly fields check [`Events::enabled`] first.
    pub fn emit(&self, event: &str, fields: Map<String, Value>) {
        let Some(out) = &self.out else { return };
        let mut obj = Map::new();
        obj.insert("event".into(), event.into());
        obj.insert("time".into(), timestamp(SystemTime::now()).into());
        obj.extend(fields);
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        if let Ok(mut w) = out.lock() {
            let _ = w.write_all(line.as_bytes()).and_then(|_| w.flush());
        }
    }

    pub fn enabled(&self) -> bool {
        self.out.is_some()
    }
}

/// A JSON object from key/value pairs, in order.
pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
