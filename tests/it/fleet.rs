//! The fleet view: the Prometheus textfile (`metrics_file`, `--metrics`)
//! and `--plot`, the SVG timeline of a run.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use crate::harness::*;

/// The samples of a text-format file (`name{labels}` → value), after
/// checking that every sample's metric has HELP and TYPE lines before it.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut described = std::collections::HashSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
            described.insert(rest.split(' ').next().unwrap_or_default().to_string());
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let name = series.split('{').next().unwrap_or_default();
        assert!(described.contains(name), "{name} has no HELP/TYPE before it");
        assert!(series.ends_with('}') && series.contains("chain=\""), "{series}");
        out.insert(series.to_string(), value.parse::<f64>().expect("value"));
    }
    out
}

fn series<'a>(s: &'a BTreeMap<String, f64>, name: &str, has: &[&str]) -> Vec<(&'a String, f64)> {
    s.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && has.iter().all(|h| k.contains(h)))
        .map(|(k, v)| (k, *v))
        .collect()
}

fn one(s: &BTreeMap<String, f64>, name: &str, has: &[&str]) -> f64 {
    let found = series(s, name, has);
    assert_eq!(found.len(), 1, "{name} {has:?}: {found:?}");
    found[0].1
}

#[test]
fn the_metrics_file_has_the_values_of_the_run() {
    let t = Test::new()
        .config("[runner]\nmetrics_file = node/runner.prom\n[env]\nSECRET = do-not-export\n")
        .traced("a", 0)
        .task("b", &format!("{TRACE}\n[ -e b.tried ] && exit 0\ntouch b.tried\nexit 1"))
        .file_mode("node/.keep", "", 0o644);
    let r = t.run_more();
    assert_eq!(r.code(), 0, "{}", r.describe());
    let path = t.path().join("node/runner.prom");
    let text = std::fs::read_to_string(&path).expect("metrics file");
    assert!(!text.contains("do-not-export"), "an [env] value in the metrics");
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o644);
    let s = samples(&text);
    assert_eq!(one(&s, "runner_run_exit_code", &[]), 0.0);
    assert_eq!(one(&s, "runner_run_tries_total", &[]), 3.0);
    assert_eq!(one(&s, "runner_run_iteration", &[]), 1.0);
    assert!(one(&s, "runner_run_end_timestamp_seconds", &[]) >= one(&s, "runner_run_start_timestamp_seconds", &[]));
    assert!(one(&s, "runner_run_duration_seconds", &[]) >= 0.0);
    assert_eq!(one(&s, "runner_run_phase", &["phase=\"finished\""]), 1.0);
    assert_eq!(one(&s, "runner_task_tries", &["task=\"b\""]), 2.0);
    assert_eq!(one(&s, "runner_task_last_result", &["task=\"b\"", "result=\"OK\""]), 1.0);
    assert_eq!(one(&s, "runner_task_last_result", &["task=\"b\"", "result=\"RETRY\""]), 0.0);
    assert_eq!(series(&s, "runner_task_last_result", &["task=\"a\""]).len(), 5, "one series per result");
    assert!(one(&s, "runner_task_last_success_timestamp_seconds", &["task=\"a\""]) > 1.7e9);
    assert!(one(&s, "runner_task_last_duration_seconds", &["task=\"a\""]) >= 0.0);
    let chain = t.tasks_dir().canonicalize().expect("canonical").to_string_lossy().into_owned();
    assert!(text.contains(&format!("chain=\"{chain}\"")), "{text}");
}

#[test]
fn last_success_outlives_the_run_and_a_failure_shows() {
    let t = Test::new().config("[runner]\nmax_tries = 1\nhalt_task =\n").traced("a", 0);
    let prom = t.path().join("m.prom");
    let p = prom.to_string_lossy().into_owned();
    assert_eq!(t.run_more_with(&["--metrics", &p]).code(), 0);
    let first =
        one(&samples(&std::fs::read_to_string(&prom).expect("m")), "runner_task_last_success_timestamp_seconds", &[]);
    let t = t.traced("a", 1);
    assert_eq!(t.run_more_with(&["--metrics", &p]).code(), 1);
    let s = samples(&std::fs::read_to_string(&prom).expect("m"));
    assert_eq!(one(&s, "runner_task_last_success_timestamp_seconds", &["task=\"a\""]), first);
    assert_eq!(one(&s, "runner_task_last_result", &["result=\"RETRY\""]), 1.0);
    assert_eq!(one(&s, "runner_run_exit_code", &[]), 1.0);
}

#[test]
fn a_metrics_file_that_cannot_be_written_is_a_warning() {
    let t = Test::new().traced("a", 0).traced("b", 0);
    let r = t.run_more_with(&["--metrics", "/nonexistent-dir/runner.prom"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
    r.stderr_has("cannot write the metrics file");
    assert_eq!(r.stderr().matches("cannot write the metrics file").count(), 1, "warned once");
    assert_eq!(r.trace(), ["a", "b"]);
}

#[test]
fn a_symlink_at_the_metrics_path_is_replaced_not_followed() {
    let t = Test::new().traced("a", 0).file_mode("victim", "precious\n", 0o644);
    std::os::unix::fs::symlink(t.path().join("victim"), t.path().join("m.prom")).expect("symlink");
    assert_eq!(t.run_more_with(&["--metrics", "m.prom"]).code(), 0);
    assert_eq!(std::fs::read_to_string(t.path().join("victim")).expect("victim"), "precious\n");
    let meta = std::fs::symlink_metadata(t.path().join("m.prom")).expect("meta");
    assert!(meta.file_type().is_file());
}

/// Every `<rect>` of class `bar` as (class, title).
fn bars(svg: &str) -> Vec<(String, String)> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG parses as XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class").is_some_and(|c| c.starts_with("bar ")))
        .map(|n| {
            let title = n.children().find(|c| c.has_tag_name("title")).and_then(|c| c.text()).unwrap_or("");
            (n.attribute("class").unwrap_or("").to_string(), title.to_string())
        })
        .collect()
}

#[test]
fn plot_draws_each_try_sleep_timeout_and_the_halt_task() {
    let t = Test::new()
        .config("[runner]\nmax_tries = 3\nkill_grace = 0.2\nhalt_task = halt.sh\n[c-slow]\nmax_time = 0.3\n")
        .traced("a-ok", 0)
        .task("b-flaky", &format!("{TRACE}\n[ -e b.tried ] && exit 0\ntouch b.tried\nexit 1"))
        .task("c-slow", &format!("{TRACE}\nexec sleep 30"))
        .task("halt.sh", "true");
    assert_eq!(t.run_more().code(), 1);
    let r = t.run_more_with(&["--plot", "run.svg"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
    let svg = std::fs::read_to_string(t.path().join("run.svg")).expect("svg");
    assert!(!svg.contains("<script") && !svg.contains("href"), "not self-contained");
    let bars = bars(&svg);
    let tries: Vec<&(String, String)> = bars.iter().filter(|(c, _)| c.starts_with("bar try ")).collect();
    // a-ok 1, b-flaky 2, c-slow 2 (timed out twice).
    assert_eq!(tries.len(), 5, "{bars:?}");
    assert!(tries.iter().any(|(c, t)| c == "bar try ok" && t.starts_with("a-ok: try 1")), "{bars:?}");
    assert!(tries.iter().any(|(c, t)| c == "bar try retry" && t.starts_with("b-flaky: try 1")), "{bars:?}");
    assert_eq!(tries.iter().filter(|(c, t)| c == "bar try timeout" && t.starts_with("c-slow")).count(), 2);
    assert_eq!(bars.iter().filter(|(c, _)| c == "bar sleep").count(), 2, "{bars:?}");
    assert!(bars.iter().any(|(c, t)| c == "bar special" && t.starts_with("halt task halt.sh")), "{bars:?}");
    for text in ["a-ok", "b-flaky", "c-slow", "halt.sh (halt task)", "exit 1", "runner run 20"] {
        assert!(svg.contains(text), "no {text:?} in the picture");
    }
    // -: stdout; --run picks a kept run; an unknown one is a usage error.
    let out = t.run_more_with(&["--plot", "-"]);
    assert!(out.stdout().starts_with("<svg"), "{}", out.describe());
    let id = svg.split("runner run ").nth(1).and_then(|s| s.split('<').next()).expect("run id").to_string();
    assert_eq!(t.run_more_with(&["--plot", "-", "--run", &id]).code(), 0);
    let r = t.run_more_with(&["--plot", "-", "--run", "20200101T000000.000000Z-0000000000000000"]);
    assert_eq!(r.code(), 64, "{}", r.describe());
    r.stderr_has("no timeline of that run");
}

#[test]
fn plot_without_a_run_says_so() {
    let t = Test::new().traced("a", 0);
    let r = t.run_more_with(&["--plot", "x.svg"]);
    assert_eq!(r.code(), 64, "{}", r.describe());
    r.stderr_has("nothing to plot");
}

#[test]
fn plot_of_a_thousand_tasks_stays_small_and_readable() {
    let mut t = Test::new();
    for i in 0..1000 {
        t = t.task(&format!("t{i:04}"), "true");
    }
    assert_eq!(t.run_more().code(), 0);
    let r = t.run_more_with(&["--plot", "big.svg"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
    let svg = std::fs::read_to_string(t.path().join("big.svg")).expect("svg");
    assert!(svg.len() < 1 << 20, "{} bytes", svg.len());
    let bars = bars(&svg);
    assert_eq!(bars.len(), 1000);
    // Rows keep their height: the picture grows, every name is there.
    let doc = roxmltree::Document::parse(&svg).expect("xml");
    let height: f64 = doc.root_element().attribute("height").and_then(|h| h.parse().ok()).expect("height");
    assert!(height >= 1000.0 * 16.0, "{height}");
    assert!(svg.contains(">t0000<") && svg.contains(">t0999<"));
}

#[test]
fn the_metrics_file_is_rewritten_after_each_task_end() {
    // b waits (up to 10 s) until the file says a ended OK; else it stops
    // the chain with exit 3.
    let wait = r#"i=0
while ! grep -q 'runner_task_last_result{.*task="a",result="OK"} 1' m.prom 2>/dev/null; do
  i=$((i+1)); [ $i -gt 1000 ] && exit 3; sleep 0.01
done
grep -q 'runner_run_phase{.*phase="running"} 1' m.prom || exit 3"#;
    let t = Test::new().traced("a", 0).task("b", wait);
    let r = t.run_more_with(&["--metrics", "m.prom"]);
    assert_eq!(r.code(), 0, "{}", r.describe());
}
