//! The JSON that runner prints or hands out — `--status --json`, the hook
//! stats, `--events` lines — checked against the schemas shipped in
//! `docs/`. A small validator of the JSON Schema keywords those files use
//! (`type`, `enum`, `required`, `properties`, `items`).

use serde_json::Value;

use crate::harness::*;

fn schema(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("schema json")
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// Every problem of `v` against `s`, with its JSON path.
fn check(s: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, v)),
            _ => true,
        };
        if !ok {
            out.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {allowed:?}"));
    }
    if let (Some(Value::Array(required)), Value::Object(o)) = (s.get("required"), v) {
        for r in required.iter().filter_map(Value::as_str) {
            if !o.contains_key(r) {
                out.push(format!("{at}: missing {r}"));
            }
        }
    }
    if let (Some(Value::Object(props)), Value::Object(o)) = (s.get("properties"), v) {
        for (k, sub) in props {
            if let Some(x) = o.get(k) {
                check(sub, x, &format!("{at}.{k}"), out);
            }
        }
    }
    if let (Some(items), Value::Array(a)) = (s.get("items"), v) {
        for (i, x) in a.iter().enumerate() {
            check(items, x, &format!("{at}[{i}]"), out);
        }
    }
}

fn assert_valid(schema_name: &str, v: &Value) {
    let mut problems = Vec::new();
    check(&schema(schema_name), v, "$", &mut problems);
    assert!(problems.is_empty(), "{schema_name}: {problems:?}\n{v:#}");
}

#[test]
fn the_validator_catches_what_it_must() {
    let s = schema("status.schema.json");
    let mut problems = Vec::new();
    check(&s, &serde_json::json!({"schema_version": 2, "phase": "busy", "tasks": [{"file": 1}]}), "$", &mut problems);
    assert!(problems.iter().any(|p| p.contains("schema_version")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("phase")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("missing run_id")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("$.tasks[0].file")), "{problems:?}");
}

#[test]
fn status_json_follows_its_schema() {
    let t = Test::new()
        .config("[runner]\nmax_tries = 2\nsleep_time = 30\n")
        .traced("1-ok", 0)
        .task("2-fail", "echo x > \"$TRACE.ran\"\nexit 1")
        .traced("3-pending", 0);
    let (cfg, dir) = (t.config_path().display().to_string(), t.tasks_dir().display().to_string());
    let status = |t: &Test| -> Value {
        let ran = t.raw_args_run(&["-c", &cfg, "--status", "--json", &dir]);
        serde_json::from_str(&ran.stdout()).expect("status json")
    };
    let none = status(&t);
    assert_valid("status.schema.json", &none);
    assert_eq!(none["phase"], "none");
    let mut r = t.spawn();
    let err = t.path().join("err");
    assert!(eventually(20, || std::fs::read_to_string(&err).is_ok_and(|s| s.contains("sleeping"))));
    let doc = status(&t);
    assert_valid("status.schema.json", &doc);
    assert_eq!(doc["phase"], "running");
    assert_eq!(doc["next_retry"]["task"], "2-fail");
    assert_eq!(doc["last_failure"]["exit_code"], 1);
    let results: Vec<&str> =
        doc["tasks"].as_array().expect("tasks").iter().filter_map(|x| x["result"].as_str()).collect();
    assert_eq!(results, ["OK", "RETRY", "PENDING"]);
    r.signal("TERM");
    assert_eq!(r.wait(20), 143);
    let doc = status(&t);
    assert_valid("status.schema.json", &doc);
    assert_eq!(doc["phase"], "cancelled");
    assert_eq!(doc["exit_code"], 143);
}

#[test]
fn hook_stats_and_events_follow_their_schemas() {
    let hook = "/bin/sh -c 'printf \"%s\\n\" \"$1\" >> \"$TRACE\"' hook";
    let ran = Test::new()
        .config(&format!("[runner]\nmax_tries = 1\ntask_hook = {hook}\n"))
        .traced("a", 0)
        .task("b", "exit 2")
        .file_mode("tasks.d/halt.sh", "#!/bin/sh\n", 0o755)
        .args(["--events", "events.jsonl"])
        .status(2);
    let stats = ran.trace();
    assert_eq!(stats.iter().filter(|l| l.starts_with('{')).count(), 4);
    for line in stats.iter().filter(|l| l.starts_with('{')) {
        assert_valid("hook-stats.schema.json", &serde_json::from_str(line).expect("stats"));
    }
    let events = ran.read("events.jsonl");
    let kinds: Vec<String> = events
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("event");
            assert_valid("events.schema.json", &v);
            if v["event"].as_str().is_some_and(|e| e.starts_with("task_")) {
                assert_valid("hook-stats.schema.json", &v);
            }
            v["event"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        ["run_start", "task_start", "task_end", "task_start", "task_end", "halt_start", "halt_end", "run_end"]
    );
}
