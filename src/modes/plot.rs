//! `--plot FILE [--run ID]`: a run drawn as a self-contained SVG timeline
//! (no scripts, no external fonts or files) from its recorded timeline:
//! one row per task in the order the tasks first ran, one bar per try
//! coloured by result, backoff sleeps in the task's row in their own
//! colour, the halt and reboot tasks and reboot waits in rows of their own,
//! names and durations as text, a time axis, a legend, the run id, start
//! and total. Long chains scroll: every row keeps its height. Reads the
//! state directory only; must not take the lock or write state.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::error::{Error, Result, code};
use crate::settings::Settings;
use crate::state::timeline::{self, Entry};

const ROW: f64 = 16.0;
const BAR: f64 = 11.0;
const CHART: f64 = 900.0;
const HEADER: f64 = 86.0;

/// What `--plot` draws into `file` (`-`: stdout).
pub fn plot(s: &Settings, file: &Path, run: Option<&str>) -> Result<i32> {
    let runs = timeline::runs(&s.state_dir);
    let run_id = match run {
        Some(id) if runs.iter().any(|r| r == id) => id.to_string(),
        Some(id) => {
            return Err(Error::Usage(format!(
                "--run {id}: no timeline of that run in {} (kept: {})",
                s.state_dir.display(),
                if runs.is_empty() { "none".to_string() } else { runs.join(", ") }
            )));
        }
        None => runs
            .last()
            .cloned()
            .ok_or_else(|| Error::Usage(format!("nothing to plot: no run is recorded in {}", s.state_dir.display())))?,
    };
    let entries = timeline::load(&s.state_dir, &run_id)
        .map_err(|e| Error::State(format!("{}: cannot read the timeline of {run_id}: {e}", s.state_dir.display())))?;
    let svg = render(&run_id, &entries);
    let written = if file.as_os_str() == "-" {
        std::io::stdout().lock().write_all(svg.as_bytes())
    } else {
        std::fs::write(file, svg.as_bytes())
    };
    written.map_err(|e| Error::State(format!("{}: cannot write: {e}", file.display())))?;
    Ok(code::OK)
}

/// One row of the picture.
struct Row {
    label: String,
    bars: Vec<Bar>,
    /// Seconds of its tries (or of the special task, or the waits).
    busy: f64,
}

struct Bar {
    start: f64,
    end: f64,
    class: &'static str,
    title: String,
}

/// The SVG of one run's timeline.
pub fn render(run_id: &str, entries: &[Entry]) -> String {
    let mut rows: Vec<Row> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut row_of = |rows: &mut Vec<Row>, key: &str, label: &str| -> usize {
        *index.entry(key.to_string()).or_insert_with(|| {
            rows.push(Row { label: label.to_string(), bars: Vec::new(), busy: 0.0 });
            rows.len() - 1
        })
    };
    let (mut t0, mut t1) = (f64::MAX, f64::MIN);
    let (mut tries, mut exit, mut truncated) = (0u64, None, false);
    for e in entries {
        let (start, end) = match e {
            Entry::Run { at, .. } | Entry::End { at, .. } | Entry::Truncated { at } => (*at, *at),
            Entry::Try { start, end, .. }
            | Entry::Sleep { start, end, .. }
            | Entry::Special { start, end, .. }
            | Entry::RebootWait { start, end, .. } => (*start, *end),
        };
        t0 = t0.min(start);
        t1 = t1.max(end);
        match e {
            Entry::Try { task, iteration, try_num, start, end, result, timed_out } => {
                tries += 1;
                let r = row_of(&mut rows, &format!("t:{task}"), task);
                let class = class_of(result, *timed_out);
                let how = if *timed_out { format!("{result}, timed out") } else { result.clone() };
                let title = format!("{task}: try {try_num} (iteration {iteration}): {how}, {}", seconds(end - start));
                rows[r].busy += end - start;
                rows[r].bars.push(Bar { start: *start, end: *end, class, title });
            }
            Entry::Sleep { task, start, end } => {
                let r = row_of(&mut rows, &format!("t:{task}"), task);
                let title = format!("{task}: backoff {}", seconds(end - start));
                rows[r].bars.push(Bar { start: *start, end: *end, class: "sleep", title });
            }
            Entry::Special { kind, task, start, end, exit_code } => {
                let r = row_of(&mut rows, &format!("s:{kind}"), &format!("{task} ({kind} task)"));
                let code = exit_code.map_or("no exit code".to_string(), |c| format!("exit {c}"));
                let title = format!("{kind} task {task}: {code}, {}", seconds(end - start));
                rows[r].busy += end - start;
                rows[r].bars.push(Bar { start: *start, end: *end, class: "special", title });
            }
            Entry::RebootWait { task, start, end } => {
                let r = row_of(&mut rows, "w:reboot", "(waiting for reboot)");
                let title = format!("waiting for the reboot {task} asked for: {}", seconds(end - start));
                rows[r].busy += end - start;
                rows[r].bars.push(Bar { start: *start, end: *end, class: "reboot", title });
            }
            Entry::End { code, .. } => exit = Some(*code),
            Entry::Truncated { .. } => truncated = true,
            Entry::Run { .. } => {}
        }
    }
    if t0 > t1 {
        (t0, t1) = (0.0, 0.0);
    }
    let span = (t1 - t0).max(0.001);
    let name_chars = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(8).clamp(8, 48);
    let left = 10.0 + name_chars as f64 * 6.7 + 80.0;
    let width = left + CHART + 60.0;
    let height = HEADER + rows.len() as f64 * ROW + 30.0;
    let x = |t: f64| left + (t - t0) / span * CHART;
    let mut svg = String::with_capacity(200 + rows.len() * 320);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">
<style>
text{{font-family:monospace;font-size:11px;fill:#212121}}
.h{{font-size:13px;font-weight:bold}}
.band{{fill:#f5f5f5}}
.tick{{stroke:#bdbdbd;stroke-width:1}}
.ok{{fill:#2e7d32}} .retry{{fill:#f9a825}} .timeout{{fill:#ef6c00}} .halt{{fill:#c62828}}
.exit{{fill:#6a1b9a}} .cancelled{{fill:#757575}} .sleep{{fill:#90caf9}} .reboot{{fill:#00838f}}
.special{{fill:#37474f}}
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
"##
    );
    let started = humantime::format_rfc3339_millis(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(t0.max(0.0)),
    );
    let end = match exit {
        Some(c) => format!("exit {c}"),
        None => "no end recorded (running, or runner was killed)".into(),
    };
    let _ = writeln!(svg, r#"<text class="h" x="10" y="18">runner run {}</text>"#, xml(run_id));
    let more = if truncated { "; the timeline was cut at its size bound" } else { "" };
    let _ = writeln!(
        svg,
        r#"<text x="10" y="36">started {started}, total {}, {} tasks, {tries} tries, {end}{more}</text>"#,
        seconds(span),
        rows.iter().filter(|r| r.bars.iter().any(|b| b.class != "sleep" && b.class != "special")).count(),
    );
    let legend = [
        ("ok", "OK"),
        ("retry", "RETRY"),
        ("timeout", "timed out"),
        ("halt", "HALT"),
        ("exit", "EXIT"),
        ("cancelled", "CANCELLED"),
        ("sleep", "backoff"),
        ("reboot", "reboot wait"),
        ("special", "halt/reboot task"),
    ];
    let mut lx = 10.0;
    for (class, text) in legend {
        let _ = writeln!(
            svg,
            r#"<rect class="legend {class}" x="{lx:.1}" y="46" width="10" height="10"/><text x="{:.1}" y="55">{text}</text>"#,
            lx + 14.0
        );
        lx += 24.0 + text.len() as f64 * 6.7;
    }
    // The time axis: six ticks with their offsets from the start.
    for i in 0..=5 {
        let t = t0 + span * f64::from(i) / 5.0;
        let tx = x(t);
        let _ = writeln!(
            svg,
            r#"<line class="tick" x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            HEADER - 6.0,
            HEADER + rows.len() as f64 * ROW,
            tx - 10.0,
            HEADER - 10.0,
            seconds(t - t0)
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = HEADER + i as f64 * ROW;
        if i % 2 == 1 {
            let _ = writeln!(svg, r#"<rect class="band" x="0" y="{y:.1}" width="{width:.0}" height="{ROW}"/>"#);
        }
        let label: String = row.label.chars().take(48).collect();
        let _ = writeln!(
            svg,
            r#"<text class="name" x="10" y="{:.1}">{}</text><text class="busy" x="{:.1}" y="{:.1}">{}</text>"#,
            y + 12.0,
            xml(&label),
            left - 74.0,
            y + 12.0,
            seconds(row.busy)
        );
        for b in &row.bars {
            let (bx, bw) = (x(b.start), ((b.end - b.start) / span * CHART).max(1.0));
            let kind = if matches!(b.class, "sleep" | "reboot" | "special") { "" } else { "try " };
            let _ = writeln!(
                svg,
                r#"<rect class="bar {kind}{}" x="{bx:.1}" y="{:.1}" width="{bw:.1}" height="{BAR}"><title>{}</title></rect>"#,
                b.class,
                y + (ROW - BAR) / 2.0,
                xml(&b.title)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// The colour class of a try's result.
fn class_of(result: &str, timed_out: bool) -> &'static str {
    match result {
        "OK" => "ok",
        "HALT" => "halt",
        "EXIT" => "exit",
        "CANCELLED" => "cancelled",
        _ if timed_out => "timeout",
        _ => "retry",
    }
}

/// `0.004 s`, `12.5 s`, `3m12s`, `2h05m`.
fn seconds(s: f64) -> String {
    let s = s.max(0.0);
    if s < 10.0 {
        format!("{s:.3} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

/// Text safe inside an XML element or attribute.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}
