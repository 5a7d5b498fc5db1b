//! Property test over the config loader: any bytes as a config file give a
//! clean result or configuration errors, never a panic.

use clap::Parser;
use proptest::prelude::*;

use runner::settings::cli::Cli;
use runner::settings::config::Diags;

/// Loads `bytes` as the config of a one-task chain, as `--check` does; the
/// diagnostics and the test's directory.
fn load(bytes: &[u8]) -> (Diags, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("fuzz.cfg");
    std::fs::write(&cfg, bytes).expect("write");
    let tasks = dir.path().join("t");
    std::fs::create_dir(&tasks).expect("mkdir");
    std::fs::write(tasks.join("a"), "#!/bin/sh\n").expect("task");
    let cli = Cli::parse_from(["runner", "--check", "-c", &cfg.to_string_lossy(), &tasks.to_string_lossy()]);
    let mut diags = Diags::default();
    let _ = runner::settings::inspect(&cli, &mut diags, true);
    let _ = runner::settings::config::load_ini(Some(&cfg))
        .map(|ini| ini.get("runner", "max_tries").map(|e| e.value.clone()));
    (diags, dir)
}

/// Lines that look like INI, with values that stress the validators.
fn ini_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[runner]".to_string()),
        Just("[DEFAULT]".to_string()),
        Just("[env]".to_string()),
        Just("[a]".to_string()),
        Just("".to_string()),
        Just("# comment".to_string()),
        "[a-z_]{1,12}",
        ("(max_time|max_tries|sleep_time|retry_jitter|kill_grace|times|keep_logs|max_sleep_time|retry_from|run|depends_on|interpreter|task_hook|halt_task|include_dir|task_dir|state_dir)",
         "[ :=]{1,2}",
         "[-0-9.eE+naif'\" \\\\/a-z,]{0,24}")
            .prop_map(|(k, sep, v)| format!("{k}{sep}{v}")),
        "[ \t][^\n]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (diags, dir) = load(&bytes);
        for d in &diags.errors {
            prop_assert!(d.at.starts_with(&dir.path().join("fuzz.cfg").display().to_string()), "{d}");
        }
    }

    #[test]
    fn ini_like_text_never_panics(lines in proptest::collection::vec(ini_line(), 0..30)) {
        let text = lines.join("\n");
        let (diags, dir) = load(text.as_bytes());
        // Every error names a file of the test (the config, at its line,
        // or a path below the test's directory), never nothing.
        for d in &diags.errors {
            prop_assert!(d.at.starts_with(&dir.path().display().to_string()), "{d}");
        }
    }
}
