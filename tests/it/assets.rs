//! The man page and completions are generated from the clap definitions
//! (`--generate-assets DIR`), so every flag is in them.

use crate::harness::*;

#[test]
fn generated_man_page_and_completions_cover_every_flag() {
    let t = Test::new();
    let dir = t.path().join("assets");
    let d = dir.display().to_string();
    let _ran = t.raw_args(["--generate-assets", &d]).status(0);
    let man = std::fs::read_to_string(dir.join("runner.1")).expect("man page");
    for section in [
        ".TH runner 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
        ".SH ENVIRONMENT",
        ".SH CONFIGURATION",
        ".SH HOOKS",
        ".SH EVENTS",
        ".SH STATUS",
        ".SH EXAMPLES",
        "max_log_size",
        "on\\-change",
        "\\fBinputs\\fR",
        "\\-\\-force",
        "once\\-per\\-instance",
        "RUNNER_INSTANCE_ID_FILE",
        ".SH \"REBOOT AND CONTINUE\"",
        "reboot_now_exit",
        "deadline_counts_reboots",
        "RUNNER_BOOT_ID_FILE",
        ".SH \"METRICS AND PLOT\"",
        "runner_task_last_result",
        "metrics_file",
    ] {
        assert!(man.contains(section), "man page lacks {section}");
    }
    let bash = std::fs::read_to_string(dir.join("runner.bash")).expect("bash");
    let zsh = std::fs::read_to_string(dir.join("_runner")).expect("zsh");
    let fish = std::fs::read_to_string(dir.join("runner.fish")).expect("fish");
    for flag in [
        "config",
        "get",
        "times",
        "halt-after",
        "syslog",
        "events",
        "state-dir",
        "resume",
        "fresh",
        "wait",
        "status",
        "check",
        "dry-run",
        "json",
        "forget",
        "allow-insecure",
        "raw-output",
    ] {
        assert!(man.contains(&format!("\\-\\-{}", flag.replace('-', "\\-"))), "man page lacks --{flag}");
        assert!(bash.contains(&format!("--{flag}")), "bash lacks --{flag}");
        assert!(zsh.contains(&format!("--{flag}")), "zsh lacks --{flag}");
        assert!(fish.contains(&format!("-l {flag}")), "fish lacks --{flag}");
    }
    assert!(!man.contains("generate-assets"), "the hidden flag stays hidden");
    // Completions offer no hidden flag, directories for TASKDIR and files
    // for -c.
    for hidden in ["watchdog", "generate-assets"] {
        assert!(!fish.contains(&format!("-l {hidden}")), "fish offers --{hidden}");
        assert!(!zsh.contains(&format!("'--{hidden}")), "zsh offers --{hidden}");
        let opts = bash.lines().find(|l| l.contains("opts=\"")).unwrap_or("");
        assert!(!opts.contains(&format!("--{hidden}")), "bash offers --{hidden}");
    }
    assert!(zsh.contains("_files -/"), "zsh completes directories for TASKDIR");
    assert!(zsh.contains("FILE:_files"), "zsh completes files for -c");
}
