//! What a task's exit means: exit status → result → decision, and the backoff
//! before a retry. Pure functions, table-tested; this is the whole task
//! protocol of SPEC §3 in one place. It must not run or record anything.

use std::time::{Duration, SystemTime};

use crate::error::code;
pub use crate::process::Exit;
use crate::settings::config::{MAX_SECS, Secs};

/// A task's result, as the hook JSON spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskResult {
    Ok,
    Retry,
    Halt,
    Exit,
    Cancelled,
}

impl TaskResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskResult::Ok => "OK",
            TaskResult::Retry => "RETRY",
            TaskResult::Halt => "HALT",
            TaskResult::Exit => "EXIT",
            TaskResult::Cancelled => "CANCELLED",
        }
    }
}

/// What the chain does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Go on to the next task.
    Continue,
    /// Sleep, then try again with the next try number.
    Retry,
    /// Run the halt task and exit with `code`.
    Halt { code: i32 },
    /// Stop without the halt task and exit with `code`.
    Stop { code: i32 },
    /// The task succeeded and the machine must reboot before the next task.
    RebootNow,
    /// The task succeeded; go on, and reboot when the chain ends.
    RebootLater,
}

impl Next {
    /// Whether the task is done and the chain goes on past it (now or
    /// after a reboot).
    pub fn is_ok(self) -> bool {
        matches!(self, Next::Continue | Next::RebootNow | Next::RebootLater)
    }
}

/// Why a run gives up other than a task failing `max_tries` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// The whole run lasted `deadline`.
    Deadline,
    /// A task asked for one reboot more than `max_reboots`.
    MaxReboots,
}

impl GiveUp {
    /// The halt task's reason and the run's recorded one.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUp::Deadline => "deadline",
            GiveUp::MaxReboots => "max_reboots",
        }
    }
}

/// The exit codes a task (or `[runner]`) turned into reboot requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebootCodes {
    pub now: Option<i32>,
    pub later: Option<i32>,
}

/// The task protocol: how a task ended, on try `try_num` of `max_tries`,
/// decides its result and what happens next.
///
/// | how it ended                         | result    | next                      |
/// |--------------------------------------|-----------|---------------------------|
/// | runner got signal N meanwhile        | CANCELLED | stop, exit 128+N          |
/// | exit 0                               | OK        | next task                 |
/// | exit 2                               | HALT      | halt task, exit 2         |
/// | exit 3                               | EXIT      | stop, exit 3              |
/// | exit `reboot_now_exit`               | OK        | reboot task, exit 4; `--resume` after the reboot goes on |
/// | exit `reboot_later_exit`             | OK        | next task; reboot when the chain ends |
/// | anything else, tries left            | RETRY     | back off, try again       |
/// | anything else, `try_num >= max_tries`| RETRY     | halt task, exit 1         |
///
/// [`Outcome::decide`] adds the run's limits: past the `deadline`, a retry
/// becomes giving up; a reboot beyond `max_reboots` too.
pub fn judge(exit: &Exit, try_num: u32, max_tries: u32, reboot: RebootCodes) -> (TaskResult, Next) {
    match exit {
        Exit::Cancelled { by, .. } => (TaskResult::Cancelled, Next::Stop { code: code::SIGNAL_BASE + by }),
        Exit::Exited { code: 0, .. } => (TaskResult::Ok, Next::Continue),
        Exit::Exited { code: 2, .. } => (TaskResult::Halt, Next::Halt { code: code::HALTED }),
        Exit::Exited { code: 3, .. } => (TaskResult::Exit, Next::Stop { code: code::STOPPED }),
        Exit::Exited { code, .. } if Some(*code) == reboot.now => (TaskResult::Ok, Next::RebootNow),
        Exit::Exited { code, .. } if Some(*code) == reboot.later => (TaskResult::Ok, Next::RebootLater),
        _ if try_num >= max_tries => (TaskResult::Retry, Next::Halt { code: code::GAVE_UP }),
        _ => (TaskResult::Retry, Next::Retry),
    }
}

/// Everything one try decided, built once from its exit; the log line, the
/// journal record, the hook JSON and the event are each rendered from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub exit: Exit,
    pub result: TaskResult,
    pub next: Next,
    /// The backoff before the next try (with [`Next::Retry`] only).
    pub delay: Option<Duration>,
    pub try_num: u32,
    pub started_at: SystemTime,
    /// Set when the run gives up for a reason of its own (then `next` is
    /// a halt with exit 1).
    pub gave_up: Option<GiveUp>,
}

/// What decides a try besides its exit: its limits, the run's, and the
/// random draw of the backoff.
pub struct Rules {
    pub max_tries: u32,
    /// The backoff's growth per try (`backoff_factor`).
    pub factor: f64,
    pub sleep_time: Secs,
    pub retry_jitter: Secs,
    pub max_sleep_time: Option<Secs>,
    /// Uniform in `[0, 1)`.
    pub draw: f64,
    pub reboot: RebootCodes,
    /// Whether the run may still reboot (`max_reboots` not reached).
    pub reboots_left: bool,
    /// Whether the run's `deadline` has passed.
    pub past_deadline: bool,
}

impl Outcome {
    /// Judges `exit` of try `try_num` and, for a retry, draws the backoff.
    pub fn decide(exit: Exit, try_num: u32, started_at: SystemTime, rules: &Rules) -> Outcome {
        let (result, mut next) = judge(&exit, try_num, rules.max_tries, rules.reboot);
        let mut gave_up = None;
        if matches!(next, Next::RebootNow | Next::RebootLater) && !rules.reboots_left {
            (next, gave_up) = (Next::Halt { code: code::GAVE_UP }, Some(GiveUp::MaxReboots));
        }
        if next == Next::Retry && rules.past_deadline {
            (next, gave_up) = (Next::Halt { code: code::GAVE_UP }, Some(GiveUp::Deadline));
        }
        let delay = (next == Next::Retry).then(|| {
            backoff(try_num, rules.factor, rules.sleep_time, rules.retry_jitter, rules.max_sleep_time, rules.draw)
        });
        Outcome { exit, result, next, delay, try_num, started_at, gave_up }
    }

    /// When the try ended.
    pub fn finished_at(&self) -> SystemTime {
        self.started_at + self.exit.duration()
    }

    /// `a: RETRY (exit 1 after 0.004 s), try 1`: the result line of the
    /// task log and (with `-v`, or when not OK) runner's own output.
    pub fn line(&self, file: &str) -> String {
        format!("{file}: {} ({}), try {}", self.result.as_str(), self.exit.describe(), self.try_num)
    }
}

/// The reference's growth of the backoff per try (`backoff_factor`'s
/// default).
pub const REFERENCE_FACTOR: f64 = 1.14;

/// The sleep after failed try `try_num`: `factor^try_num * U`, U uniform in
/// `[sleep_time, sleep_time + retry_jitter]`, capped by `max_sleep_time`
/// (and by [`MAX_SECS`]).
///
/// `draw` is a uniform sample from `[0, 1)`. When both inputs are whole
/// seconds, U is a whole number and the result is rounded down to whole
/// seconds (the reference's formula); otherwise both keep milliseconds.
/// This is the one implementation: the chain, `--dry-run`'s schedule and
/// `bench/fleet-sim` call it.
pub fn backoff(
    try_num: u32,
    factor: f64,
    sleep_time: Secs,
    retry_jitter: Secs,
    cap: Option<Secs>,
    draw: f64,
) -> Duration {
    let growth = factor.powi(try_num.min(100_000) as i32);
    let secs = if sleep_time.is_whole() && retry_jitter.is_whole() {
        let u = sleep_time.0 + (draw * (retry_jitter.0 + 1.0)).floor().min(retry_jitter.0);
        if u == 0.0 { 0.0 } else { (growth * u).floor() }
    } else {
        let u = sleep_time.0 + (draw * retry_jitter.0 * 1000.0).round() / 1000.0;
        if u == 0.0 { 0.0 } else { (growth * u * 1000.0).round() / 1000.0 }
    };
    let limit = cap.map_or(MAX_SECS, |c| c.0.min(MAX_SECS));
    // An infinite growth (a large factor, many tries) is the cap too.
    let capped = if secs.is_nan() { limit } else { secs.min(limit) };
    Duration::from_secs_f64(capped.max(0.0))
}

/// The backoff schedule of a task as `--dry-run` shows it: the shortest
/// and longest sleep after each of the first `first` failed tries, and the
/// shortest and longest total of all sleeps before giving up.
pub fn schedule(
    max_tries: u32,
    factor: f64,
    sleep_time: Secs,
    retry_jitter: Secs,
    cap: Option<Secs>,
    first: usize,
) -> (Vec<(Duration, Duration)>, (Duration, Duration)) {
    let sleeps = max_tries.saturating_sub(1);
    let mut shown = Vec::new();
    let (mut lo, mut hi) = (0f64, 0f64);
    // Beyond this many sleeps every one is at its cap (or at the limit).
    let counted = sleeps.min(100_000);
    for n in 1..=counted {
        let a = backoff(n, factor, sleep_time, retry_jitter, cap, 0.0);
        let b = backoff(n, factor, sleep_time, retry_jitter, cap, 1.0 - f64::EPSILON);
        if shown.len() < first {
            shown.push((a, b));
        }
        (lo, hi) = (lo + a.as_secs_f64(), hi + b.as_secs_f64());
        if n == counted && sleeps > counted {
            let rest = f64::from(sleeps - counted);
            (lo, hi) = (lo + rest * a.as_secs_f64(), hi + rest * b.as_secs_f64());
        }
    }
    let total = |s: f64| Duration::from_secs_f64(s.min(MAX_SECS * 1000.0));
    (shown, (total(lo), total(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> Exit {
        Exit::Exited { code, duration: Duration::ZERO }
    }

    #[test]
    fn protocol_table() {
        use Next::*;
        use TaskResult as R;
        let d = Duration::ZERO;
        let signalled = Exit::Signalled { signal: 9, duration: d };
        let timed_out = Exit::TimedOut { code: None, signal: Some(15), duration: d };
        let timed_out_but_0 = Exit::TimedOut { code: Some(0), signal: None, duration: d };
        let no_start = Exit::NotStarted { reason: "t: No such file".into(), duration: d };
        let no_wait = Exit::WaitFailed { reason: "t: waiting failed".into(), duration: d };
        let cancelled = Exit::Cancelled { by: 15, code: Some(0), signal: None, duration: d };
        let table: &[(&Exit, u32, u32, TaskResult, Next)] = &[
            (&exited(0), 1, 5, R::Ok, Continue),
            (&exited(0), 5, 5, R::Ok, Continue),
            (&exited(2), 1, 5, R::Halt, Halt { code: 2 }),
            (&exited(3), 1, 5, R::Exit, Stop { code: 3 }),
            (&exited(1), 1, 5, R::Retry, Retry),
            (&exited(1), 4, 5, R::Retry, Retry),
            (&exited(1), 5, 5, R::Retry, Halt { code: 1 }),
            (&exited(1), 7, 5, R::Retry, Halt { code: 1 }),
            (&exited(4), 1, 1, R::Retry, Halt { code: 1 }),
            (&exited(255), 1, 5, R::Retry, Retry),
            (&signalled, 1, 5, R::Retry, Retry),
            (&timed_out, 1, 5, R::Retry, Retry),
            (&timed_out_but_0, 1, 5, R::Retry, Retry),
            (&no_start, 1, 5, R::Retry, Retry),
            (&no_start, 2, 2, R::Retry, Halt { code: 1 }),
            (&no_wait, 1, 5, R::Retry, Retry),
            (&cancelled, 1, 5, R::Cancelled, Stop { code: 143 }),
        ];
        for (exit, try_num, max, result, next) in table {
            assert_eq!(
                judge(exit, *try_num, *max, RebootCodes::default()),
                (*result, *next),
                "{exit:?} try {try_num}/{max}"
            );
        }
        // With reboot codes (Chef's 35 and 37); 35 is a plain failure
        // without them (above: any other code).
        let reboot = RebootCodes { now: Some(35), later: Some(37) };
        let table: &[(&Exit, u32, u32, TaskResult, Next)] = &[
            (&exited(35), 1, 5, R::Ok, RebootNow),
            (&exited(37), 5, 5, R::Ok, RebootLater),
            (&exited(0), 1, 5, R::Ok, Continue),
            (&exited(36), 5, 5, R::Retry, Halt { code: 1 }),
            (&cancelled, 1, 5, R::Cancelled, Stop { code: 143 }),
        ];
        for (exit, try_num, max, result, next) in table {
            assert_eq!(judge(exit, *try_num, *max, reboot), (*result, *next), "{exit:?} with reboot codes");
        }
    }

    #[test]
    fn run_limits_turn_retries_and_reboots_into_giving_up() {
        let rules = |reboots_left, past_deadline| Rules {
            max_tries: 5,
            factor: REFERENCE_FACTOR,
            sleep_time: Secs(0.0),
            retry_jitter: Secs(0.0),
            max_sleep_time: None,
            draw: 0.0,
            reboot: RebootCodes { now: Some(35), later: Some(37) },
            reboots_left,
            past_deadline,
        };
        let t = SystemTime::UNIX_EPOCH;
        let o = Outcome::decide(exited(1), 1, t, &rules(true, true));
        assert_eq!((o.next, o.gave_up, o.delay), (Next::Halt { code: 1 }, Some(GiveUp::Deadline), None));
        let o = Outcome::decide(exited(0), 1, t, &rules(true, true));
        assert_eq!((o.next, o.gave_up), (Next::Continue, None));
        let o = Outcome::decide(exited(35), 1, t, &rules(false, false));
        assert_eq!((o.result, o.next, o.gave_up), (TaskResult::Ok, Next::Halt { code: 1 }, Some(GiveUp::MaxReboots)));
        let o = Outcome::decide(exited(37), 1, t, &rules(true, false));
        assert_eq!((o.next, o.gave_up), (Next::RebootLater, None));
        let o = Outcome::decide(exited(1), 1, t, &rules(true, false));
        assert_eq!((o.next, o.delay), (Next::Retry, Some(Duration::ZERO)));
    }

    #[test]
    fn backoff_whole_seconds_is_the_reference_formula() {
        let s = |x| Secs(x);
        // U = 1 (draw 0): 1.14 * 1 = 1.14 → 1
        assert_eq!(backoff(1, REFERENCE_FACTOR, s(1.0), s(30.0), None, 0.0), Duration::from_secs(1));
        // U = 31 (draw just below 1): 1.14^2 * 31 = 40.28 → 40
        assert_eq!(backoff(2, REFERENCE_FACTOR, s(1.0), s(30.0), None, 0.999_999), Duration::from_secs(40));
        // never below sleep_time
        for t in 1..20 {
            assert!(backoff(t, REFERENCE_FACTOR, s(3.0), s(0.0), None, 0.5) >= Duration::from_secs(3));
        }
        assert_eq!(backoff(1, REFERENCE_FACTOR, s(0.0), s(0.0), None, 0.7), Duration::ZERO);
    }

    #[test]
    fn backoff_fractional_keeps_milliseconds() {
        let s = |x| Secs(x);
        assert_eq!(backoff(1, REFERENCE_FACTOR, s(0.5), s(0.0), None, 0.3), Duration::from_millis(570));
        assert_eq!(backoff(1, REFERENCE_FACTOR, s(0.5), s(0.25), None, 1.0), Duration::from_millis(855));
    }

    #[test]
    fn backoff_factor_grows_each_sleep() {
        let s = |x| Secs(x);
        // 2^n x 1 with no jitter: exact.
        for (n, want) in [(1, 2), (2, 4), (3, 8), (10, 1024)] {
            assert_eq!(backoff(n, 2.0, s(1.0), s(0.0), None, 0.5), Duration::from_secs(want));
        }
        // A factor of 1: no growth.
        assert_eq!(backoff(7, 1.0, s(5.0), s(0.0), None, 0.0), Duration::from_secs(5));
        // 2^n x U(0.5, 1) capped at 300 s.
        assert_eq!(backoff(3, 2.0, s(0.5), s(0.5), Some(s(300.0)), 0.0), Duration::from_secs(4));
        assert_eq!(backoff(3, 2.0, s(0.5), s(0.5), Some(s(300.0)), 1.0), Duration::from_secs(8));
        assert_eq!(backoff(40, 2.0, s(0.5), s(0.5), Some(s(300.0)), 0.3), Duration::from_secs(300));
        // Growth past f64's range is the cap, never a panic.
        assert_eq!(backoff(100_000, 1e10, s(1.0), s(0.0), None, 0.0), Duration::from_secs_f64(MAX_SECS));
        assert_eq!(backoff(100_000, 1e10, s(0.0), s(0.0), None, 0.0), Duration::ZERO);
    }

    #[test]
    fn schedule_gives_the_first_sleeps_and_the_total() {
        let s = |x| Secs(x);
        let (first, total) = schedule(5, 2.0, s(1.0), s(0.0), None, 3);
        let secs = |v: &[(Duration, Duration)]| v.iter().map(|(a, b)| (a.as_secs(), b.as_secs())).collect::<Vec<_>>();
        assert_eq!(secs(&first), [(2, 2), (4, 4), (8, 8)]);
        assert_eq!((total.0.as_secs(), total.1.as_secs()), (30, 30));
        let (first, total) = schedule(5, REFERENCE_FACTOR, s(1.0), s(30.0), None, 5);
        assert_eq!(first.len(), 4);
        assert_eq!((first[0].0.as_secs(), first[0].1.as_secs()), (1, 35));
        assert!(total.0 < total.1);
        let (first, total) = schedule(1, 2.0, s(1.0), s(0.0), None, 5);
        assert!(first.is_empty() && total.1.is_zero());
        // Very many tries: the rest at the cap.
        let (_, total) = schedule(u32::MAX, 2.0, s(1.0), s(0.0), Some(s(1.0)), 5);
        assert_eq!(total.0.as_secs(), u64::from(u32::MAX - 1));
    }

    #[test]
    fn backoff_cap() {
        let s = |x| Secs(x);
        assert_eq!(backoff(30, REFERENCE_FACTOR, s(10.0), s(0.0), Some(s(2.5)), 0.0), Duration::from_millis(2500));
        assert_eq!(
            backoff(u32::MAX, REFERENCE_FACTOR, s(MAX_SECS), s(MAX_SECS), None, 0.99),
            Duration::from_secs_f64(MAX_SECS)
        );
    }
}
