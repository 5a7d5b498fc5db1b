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
gave up: a task kept failing until max_tries; the halt task was run
.TP
\fB2\fR
a task exited 2: the halt task was run
.TP
\fB3\fR
a task exited 3: stopped without the halt task
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
.SH "TASK PROTOCOL"
Each executable in TASKDIR runs in name order (after its \fBdepends_on\fR).
Exit 0 goes on to the next task; exit 2 runs the halt task and stops; exit 3
stops without it; anything else (a signal, a timeout, a task that cannot be
started) is retried after a backoff of 1.14^try * U seconds, U uniform in
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
runner itself reads \fBXDG_STATE_HOME\fR and \fBHOME\fR (state directory) and \fBRUNNER_SYSLOG_SOCKET\fR (the socket for \fB\-\-syslog\fR, default /dev/log).
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
    page.extend_from_slice(EXTRA.as_bytes());
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
