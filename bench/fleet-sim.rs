//! fleet-sim: what a fleet of machines running one runner config does to a
//! shared dependency (an artifact server, a package mirror) that is down
//! for a while. Run it with `bench/fleet-sim`.
//!
//! Model: N machines boot uniformly within `--boot-spread` seconds and run
//! a chain whose task needs the dependency. Each try is one request that
//! takes `--try-time` seconds; while the dependency is down (the first
//! `--outage` seconds) it fails, and runner's own backoff code
//! (`runner::chain::outcome::backoff`, the function the chain calls, with
//! the config's `max_tries`, `backoff_factor`, `sleep_time`,
//! `retry_jitter`, `max_sleep_time` and `deadline`) decides the sleep.
//! After `max_tries` failed tries (or past the deadline) the run gives up
//! and the halt task reboots the machine (`--reboot-time` seconds), which
//! then starts over. Printed: the reboots (give-ups), the peak request
//! rate after the dependency recovered (requests started in one second),
//! and how long after recovery the last machine was done.

use std::path::PathBuf;

use rand::{RngExt, SeedableRng};
use runner::chain::outcome::backoff;
use runner::settings::config::{Config, Diags, Secs, load_ini};

struct Args {
    config: Option<PathBuf>,
    task: Option<String>,
    machines: u32,
    outage: f64,
    boot_spread: f64,
    try_time: f64,
    reboot_time: f64,
    seed: u64,
    json: bool,
}

const USAGE: &str = "usage: fleet-sim [-c CONFIG] [--task NAME] [--machines N] [--outage SECS] \
[--boot-spread SECS] [--try-time SECS] [--reboot-time SECS] [--seed N] [--json]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        config: None,
        task: None,
        machines: 10_000,
        outage: 600.0,
        boot_spread: 60.0,
        try_time: 1.0,
        reboot_time: 90.0,
        seed: 1,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
        let bad = || format!("{flag}: bad value '{value}'");
        match flag.as_str() {
            "-c" | "--config" => a.config = Some(PathBuf::from(&value)),
            "--task" => a.task = Some(value.clone()),
            "--machines" => a.machines = value.parse().map_err(|_| bad())?,
            "--outage" => a.outage = num(&value).ok_or_else(bad)?,
            "--boot-spread" => a.boot_spread = num(&value).ok_or_else(bad)?,
            "--try-time" => a.try_time = num(&value).filter(|x| *x > 0.0).ok_or_else(bad)?,
            "--reboot-time" => a.reboot_time = num(&value).ok_or_else(bad)?,
            "--seed" => a.seed = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// The retry policy the simulated task runs with, read from the config
/// the way runner reads it.
struct Policy {
    max_tries: u32,
    factor: f64,
    sleep_time: Secs,
    retry_jitter: Secs,
    cap: Option<Secs>,
    deadline: Option<f64>,
}

fn policy(a: &Args) -> Result<Policy, String> {
    let path = a.config.as_ref().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    let ini = load_ini(path.as_deref()).map_err(|d| d.to_string())?;
    let mut diags = Diags::default();
    let config = Config::from_ini(ini, path, &mut diags);
    let sections: Vec<_> = a.task.iter().filter_map(|t| config.ini.section(t)).collect();
    let task = config.task_config(&sections, &mut diags);
    if let Some(e) = diags.errors.first() {
        return Err(e.to_string());
    }
    let l = task.limits;
    Ok(Policy {
        max_tries: l.max_tries.value,
        factor: l.backoff_factor.value,
        sleep_time: l.sleep_time.value,
        retry_jitter: l.retry_jitter.value,
        cap: config.runner.max_sleep_time,
        deadline: config.runner.deadline.map(|d| d.0),
    })
}

struct Outcome {
    reboots: u64,
    peak_after: u32,
    last_done_after: f64,
    requests: u64,
}

fn simulate(a: &Args, p: &Policy) -> Outcome {
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    // Requests started per second, from the first boot on.
    let mut per_second: Vec<u32> = Vec::new();
    let (mut reboots, mut requests, mut last_done) = (0u64, 0u64, 0f64);
    // Nothing is simulated past this (a policy that never converges).
    let horizon = a.outage + 30.0 * 86_400.0;
    for _ in 0..a.machines {
        let mut t = rng.random::<f64>() * a.boot_spread;
        let (mut run_start, mut try_num) = (t, 1u32);
        while t < horizon {
            let second = t as usize;
            if per_second.len() <= second {
                per_second.resize(second + 1, 0);
            }
            per_second[second] += 1;
            requests += 1;
            if t >= a.outage {
                last_done = last_done.max(t + a.try_time);
                break;
            }
            t += a.try_time;
            let past = |t: f64| p.deadline.is_some_and(|d| t - run_start >= d);
            let mut give_up = try_num >= p.max_tries || past(t);
            if !give_up {
                let sleep = backoff(try_num, p.factor, p.sleep_time, p.retry_jitter, p.cap, rng.random::<f64>());
                t += sleep.as_secs_f64();
                try_num += 1;
                if let Some(d) = p.deadline.filter(|_| past(t)) {
                    t = run_start + d;
                    give_up = true;
                }
            }
            if give_up {
                reboots += 1;
                t += a.reboot_time;
                (run_start, try_num) = (t, 1);
            }
        }
    }
    let peak_after = per_second.iter().skip(a.outage as usize).copied().max().unwrap_or(0);
    Outcome { reboots, peak_after, last_done_after: (last_done - a.outage).max(0.0), requests }
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fleet-sim: {e}");
            std::process::exit(64);
        }
    };
    let p = match policy(&a) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fleet-sim: {e}");
            std::process::exit(78);
        }
    };
    let o = simulate(&a, &p);
    let cap = p.cap.map_or("none".to_string(), |c| format!("{} s", c.0));
    let deadline = p.deadline.map_or("none".to_string(), |d| format!("{d} s"));
    if a.json {
        println!(
            "{{\"machines\":{},\"outage_s\":{},\"reboots\":{},\"peak_requests_per_s_after_recovery\":{},\
             \"last_done_s_after_recovery\":{:.0},\"requests\":{}}}",
            a.machines, a.outage, o.reboots, o.peak_after, o.last_done_after, o.requests
        );
        return;
    }
    println!(
        "{} machines booting within {} s; dependency down for the first {} s; a try takes {} s, a reboot {} s",
        a.machines, a.boot_spread, a.outage, a.try_time, a.reboot_time
    );
    println!(
        "policy: max_tries {}, sleep {}^n x U({}, {}) s, cap {cap}, deadline {deadline}",
        p.max_tries,
        p.factor,
        p.sleep_time.0,
        p.sleep_time.0 + p.retry_jitter.0
    );
    println!("reboots (give-ups):                 {}", o.reboots);
    println!("peak requests/s after recovery:     {}", o.peak_after);
    println!("last machine done after recovery:   {:.0} s", o.last_done_after);
    println!("requests in all:                    {}", o.requests);
}
