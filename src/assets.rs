//! The man page `runner(1)` (clap_mangen) and shell completions
//! (clap_complete), generated from the clap definitions by the hidden
//! `--generate-assets DIR` flag, so they cannot drift from the flags.
//! The Debian package build calls it; a test checks its output.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::settings::cli::Cli;

/// Sections of the man page that clap does not know about.
const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
every iteration completed; \fB\-g\fR answered; \fB\-\-check\fR found no error; nothing to do
.TP
\fB1\fR
gave up: a task kept failing until max_tries, the run's deadline passed, a task asked for more than max_reboots reboots, or a reboot did not happen; the halt task was run
.TP
\fB2\fR
a task exited 2: the halt task was run
.TP
\fB3\fR
a task exited 3: stopped without the halt task
.TP
\fB4\fR
a task asked for a reboot: the run waits for it (recorded) and the reboot task was run, or there is none and a wrapper is to reboot; \fB\-\-resume\fR in the next boot goes on
.TP
\fB64\fR
usage error
.TP
\fB70\fR
internal error (a bug in runner)
.TP
\fB74\fR
the state directory cannot be created, read, written or locked, or its journal and markers copy both fail to load
.TP
\fB75\fR
another runner holds this chain's lock (without \fB\-\-wait\fR)
.TP
\fB77\fR
as root, the state directory (or a directory on the way to it) could be steered by another user
.TP
\fB78\fR
configuration error: unreadable or malformed config, bad value, missing TASKDIR, dependency cycle or missing dependency, insecure permissions (as root: any directory on the path to a task, hook, interpreter or config file, through symlinks, owned by another user or writable by group or others)
.TP
\fB128+N\fR
stopped by signal N (SIGINT 130, SIGTERM 143, SIGHUP 129)
.SH CONFIGURATION
One INI file (\fB\-c\fR), read with Python 2.7's RawConfigParser rules as mozilla/build\-runner did: \fB[section]\fR, \fIkey\fR = \fIvalue\fR or \fIkey\fR: \fIvalue\fR, comments starting with # or ; (a ; after white space ends a value), indented continuation lines, \fB[DEFAULT]\fR as fallback.
.PP
\fB[runner]\fR keys (default in brackets):
@RUNNER_KEYS@
.PP
\fB[env]\fR: each key is exported to tasks, hooks and the halt task (with the \fB[DEFAULT]\fR keys); values are never logged.
.PP
A section named after a task (its name, \fB3\-check\-ami.sh\fR \(-> \fBcheck\-ami\fR, or its file name) may set \fBmax_time\fR, \fBmax_tries\fR, \fBsleep_time\fR, \fBretry_jitter\fR, \fBinterpreter\fR, \fBkill_grace\fR, \fBdepends_on\fR = \fIa, b\fR (run after those tasks; a cycle or unknown task is exit 78) and \fBrun\fR = \fBalways\fR | \fBonce\fR | \fBonce\-per\-instance\fR | \fBonce\-per\-boot\fR | \fBon\-change\fR, and with \fBon\-change\fR \fBinputs\fR. Any other key is free\-form configuration for tasks to read with \fB\-g\fR.
.PP
\fBrun = once\fR: skipped after its first OK on this state directory (a golden image carries the marker to its clones). \fBonce\-per\-instance\fR: once per machine identity, the cloud\-init instance id (/var/lib/cloud/data/instance\-id) else /etc/machine\-id, so each clone of an image runs it once (\fBRUNNER_INSTANCE_ID_FILE\fR names another file: a test override). \fBonce\-per\-boot\fR: once per boot id. \fBon\-change\fR: runs when its fingerprint differs from the one recorded at its last OK, else is skipped. The fingerprint is a BLAKE3 digest of the task file, the interpreter, the effective settings, the task's own section keys, the [env] values and each of \fBinputs\fR = \fIentry\fR, ...: a path relative to the config file's directory (a file's bytes, a directory's files, a missing path), a glob (its matches and each match), \fBenv:\fR\fINAME\fR (the variable as the task sees it) or \fBcmd:\fR\fICOMMAND\fR (the standard output of sh \-c in the config's directory). A failing command or unreadable input runs the task with a warning and records nothing; a failed task keeps the old fingerprint; an input that changed while the task ran is warned about and the fingerprint is not recorded. \fB\-\-dry\-run\fR and \fB\-v\fR say why each task runs or is skipped (run: never succeeded, run: inputs changed (...), skip: unchanged since ...). \fB\-\-force\fR \fITASK\fR runs a task whatever its run mode; \fB\-\-forget\fR \fITASK\fR drops its marker or fingerprint. An unparsable \fBinputs\fR entry, an unknown \fBrun\fR value or \fBinputs\fR on a task that is not on\-change is exit 78.
.SH "REBOOT AND CONTINUE"
With \fBreboot_now_exit\fR (e.g. 35) set in [runner] or a task section, a task exiting that code succeeded and the machine must reboot before the next task; with \fBreboot_later_exit\fR (e.g. 37), when the chain (the iteration) ends. Unset by default: those codes are then failures and retried. runner records the task as OK and the run as waiting for reboot with the boot id (durably, first), runs \fBreboot_task\fR (TASKDIR/reboot.sh, handled like the halt task) and exits 4. \fBrunner \-\-resume\fR in a boot with another boot id goes on with the same run at the next task (or the next iteration; a finished chain finishes). In the same boot it runs the reboot task again, at most the asking task's max_tries times, then gives up (exit 1, halt task). \fBmax_reboots\fR (10) bounds the reboots of one run. \fB\-\-status\fR shows "waiting for reboot requested by TASK at TIME (boot id ID)" and exits 4; events reboot_requested, reboot_task, reboot_resumed; the hook stats of the asking task carry "reboot": "now" or "later".
.PP
\fBdeadline\fR (seconds) bounds a whole run: when it has lasted that long the running task is stopped like a timeout, a backoff sleep is cut short, no further try starts, and the run gives up (exit 1, halt task, reason deadline in the log, \fB\-\-status\fR and the run_end event). Time waiting for a reboot counts only with \fBdeadline_counts_reboots\fR = true.
.SH "METRICS AND PLOT"
\fBmetrics_file\fR (or \fB\-\-metrics\fR \fIFILE\fR) is rewritten atomically in Prometheus' text format (mode 0644, a temporary file renamed over it, symlinks replaced, never followed) after every task end (at most once a second once the file is over 64 KiB) and at the run's end, for node_exporter's textfile collector: runner_run_start_timestamp_seconds, runner_run_end_timestamp_seconds, runner_run_exit_code, runner_run_phase, runner_run_duration_seconds, runner_run_iteration, runner_run_tries_total, and per task (labels chain and task) runner_task_last_duration_seconds, runner_task_last_result (one series per result), runner_task_tries, runner_task_last_success_timestamp_seconds. A file that cannot be written is a warning.
.PP
\fB\-\-plot\fR \fIFILE\fR draws the last run (\fB\-\-run\fR \fIID\fR: another kept one) as a self\-contained SVG: a row per task, a bar per try coloured by result, backoff sleeps, the halt and reboot tasks, reboot waits, a time axis and a legend; rows keep their height, so long chains scroll. It reads STATE_DIR/timelines/RUN_ID.jsonl (the newest keep_logs runs are kept; one run's stops at 8 MiB).
.SH HOOKS
\fBtask_hook\fR runs before and after each task, \fBpre_task_hook\fR before, \fBpost_task_hook\fR after: the command split like a shell would, plus the stats JSON as one more argument (never through a shell). Before: {"try_num", "max_retries", "task", "result": "RUNNING", "name", "iteration", "run_id", "attempt_key", "started_at"}; after: the same with \fBresult\fR one of OK RETRY HALT EXIT CANCELLED plus "exit_code", "signal", "timed_out", "duration_s", "finished_at", "log_file". A hook's exit status never changes the chain. Schema: /usr/share/doc/runner/hook\-stats.schema.json (status.schema.json and events.schema.json beside it).
.SH EVENTS
\fB\-\-events\fR \fIFILE\fR appends one JSON object per line: run_start, task_start, task_end (with the hook stats), sleep (seconds, next_try), halt_start (reason), halt_end, run_end (exit_code, tasks_ok, retries, duration_s, summary). Every line has "event" and "time".
.SH STATUS
\fB\-\-status\fR prints what the chain is doing now or did last and exits with the last run's exit code (0 while one runs or none is recorded); \fB\-\-status \-\-wait\fR first waits for the running chain to end (\fB\-\-wait\-timeout\fR \fISECS\fR: 75 when it passes). \fB\-\-status \-\-json\fR prints a versioned document: schema_version, phase (none, running, interrupted, cancelled, finished), run_id, current task, next_retry, last_failure, exit_code and the tasks in plan order. When \fBNOTIFY_SOCKET\fR is set, runner sends READY=1 and STATUS= lines, which systemctl status shows.
.SH "TASK PROTOCOL"
Each executable in TASKDIR runs in name order (after its \fBdepends_on\fR).
Exit 0 goes on to the next task; exit 2 runs the halt task and stops; exit 3
stops without it; anything else (a signal, a timeout, a task that cannot be
started) is retried after a backoff of backoff_factor^try * U seconds (backoff_factor 1.14 by default), U uniform in
[sleep_time, sleep_time + retry_jitter], until max_tries.
.SH FILES
.TP
\fI/etc/runner.cfg\fR
the configuration of the packaged systemd unit (INI: [runner], [env] and per\-task sections)
.TP
\fI/etc/runner.d/\fR
the task directory of the packaged systemd unit
.TP
\fI/var/lib/runner/CHAIN/\fR
state directory when run as root: \fIlock\fR, \fIstate.log\fR (the append\-only journal), \fIstate.json\fR (its snapshot), \fImarkers.json\fR (the run\-once markers' second copy) and \fIlogs/RUN_ID/TASK.log\fR (iteration N of a run: \fIlogs/RUN_ID.N/\fR; the newest keep_logs iterations are kept, each task log capped at max_log_size)
.TP
\fISTATE_DIR/timelines/RUN_ID.jsonl\fR
what took time in a run (tries, sleeps, halt and reboot tasks, reboot waits), for \fB\-\-plot\fR
.TP
\fI~/.local/state/runner/CHAIN/\fR
state directory otherwise ($XDG_STATE_HOME/runner/CHAIN)
.TP
\fI/lib/systemd/system/runner.service\fR
oneshot unit that runs the chain once at boot with \fB\-\-resume\fR (not enabled by default)
.SH ENVIRONMENT
Tasks and hooks get runner's environment plus the [env] section and:
.TP
\fBRUNNER_CONFIG_CMD\fR
this runner with \fB\-c\fR and the absolute config path; \fB$RUNNER_CONFIG_CMD \-g section.key\fR prints a value
.TP
\fBRUNNER_TASK\fR, \fBRUNNER_TASK_NAME\fR
the task's file name and name
.TP
\fBRUNNER_TRY_NUM\fR, \fBRUNNER_MAX_TRIES\fR, \fBRUNNER_ITERATION\fR
try number within the iteration, the task's max_tries, the iteration
.TP
\fBRUNNER_RUN_ID\fR, \fBRUNNER_ATTEMPT_KEY\fR
the run's id; an idempotency key kept while the task is retried or resumed and renewed after it succeeds
.TP
\fBRUNNER_LOG_FILE\fR
the task's log file
.PP
runner itself reads \fBRUNNER_BOOT_ID_FILE\fR (a test override: the file holding the boot id instead of /proc/sys/kernel/random/boot_id, to simulate a reboot; once\-per\-boot markers use it too), \fBXDG_STATE_HOME\fR and \fBHOME\fR (state directory), \fBRUNNER_SYSLOG_SOCKET\fR (the socket for \fB\-\-syslog\fR, default /dev/log), \fBNOTIFY_SOCKET\fR (sd_notify), and \fBJOURNAL_STREAM\fR: when it names runner's stderr, every line goes to the journal natively with the fields \fBRUNNER_TASK\fR, \fBRUNNER_RUN_ID\fR, \fBRUNNER_TRY\fR and \fBRUNNER_ITERATION\fR (\fBjournalctl \-u runner RUNNER_TASK=\fR\fIfile\fR); \fBRUNNER_JOURNAL_SOCKET\fR names another socket than /run/systemd/journal/socket.
.SH EXAMPLES
.TP
\fBrunner \-c /etc/runner.cfg /etc/runner.d\fR
run the chain forever (a task says when the machine must be recycled)
.TP
\fBrunner \-c /etc/runner.cfg \-n 1 \-\-resume\fR
provision once at boot, going on where a reboot cut the last run short
.TP
\fBrunner \-c /etc/runner.cfg \-\-check\fR
validate the configuration and tasks; exit 78 on any error
.TP
\fBrunner \-c /etc/runner.cfg \-\-status \-\-wait\fR
wait for the running chain and exit with its exit code
.TP
\fBX=$($RUNNER_CONFIG_CMD \-g hg.remote)\fR
in a task: read one configuration value
.SH "SEE ALSO"
\fBrun\-parts\fR(8), \fBsystemd.service\fR(5)
"#;

/// Writes `runner.1`, `runner.bash`, `_runner` (zsh) and `runner.fish` into
/// `dir`.
pub fn generate(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone()).section("1").manual("runner manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let keys: String = crate::settings::config::RUNNER_KEY_DOCS
        .iter()
        .map(|(k, d, m)| format!(".TP\n\\fB{k}\\fR [{}]\n{}\n", d.replace('-', "\\-"), m.replace('-', "\\-")))
        .collect();
    page.extend_from_slice(EXTRA.replace("@RUNNER_KEYS@\n", &keys).as_bytes());
    man.render_version_section(&mut page)?;
    File::create(dir.join("runner.1"))?.write_all(&page)?;
    let hidden: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect();
    for (shell, name) in [(Shell::Bash, "runner.bash"), (Shell::Zsh, "_runner"), (Shell::Fish, "runner.fish")] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "runner", &mut text);
        let text = without_hidden(&String::from_utf8_lossy(&text), &hidden);
        File::create(dir.join(name))?.write_all(text.as_bytes())?;
    }
    Ok(())
}

/// A completion script without the hidden flags (packaging and the
/// watchdog are runner's own business): lines that offer one go (zsh,
/// fish), and the words in bash's list.
fn without_hidden(script: &str, hidden: &[String]) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        let fish_or_zsh = hidden.iter().any(|h| {
            let long = h.trim_start_matches('-');
            line.contains(&format!("'{h}")) || line.contains(&format!("-l {long} "))
        });
        if fish_or_zsh {
            continue;
        }
        let mut line = line.to_string();
        for h in hidden {
            line = line.replace(&format!(" {h} "), " ").replace(&format!(" {h}\""), "\"");
        }
        out.push_str(&line);
    }
    out
}
