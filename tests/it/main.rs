//! Integration tests: the real `runner` binary on temporary task
//! directories. One binary; a file per behaviour; `harness` builds the
//! scenarios.

mod harness;

mod assets;
mod backoff;
mod check;
mod cli;
mod config;
mod convergence;
mod crash;
mod demo;
mod discovery;
mod env;
mod events;
mod fidelity;
mod fleet;
mod fuzz;
mod hooks;
mod journal;
mod ops;
mod order;
mod output;
mod protocol;
mod reboot;
mod schema;
mod signals;
mod state;
mod supervision;
mod timeout;
mod trust;
