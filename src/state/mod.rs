//! The state directory of a chain and what lives in it.
//!
//! - [`dir`]: where it is, creating and checking it (as root, exit 77 when
//!   another user could steer it), the chain lock, and every file inside it
//!   opened without following symlinks, relative to one open directory.
//! - [`journal`]: the last run of the chain and the run-once markers, with
//!   a second durable copy of the markers.
//! - [`logs`]: per-run log folders and their pruning.
//! - [`timeline`]: what took time in a run, for `--plot`.
//! - [`metrics`]: the Prometheus textfile.
//!
//! This module must not decide anything about the chain: it records what
//! the chain tells it and answers what it recorded.

pub mod dir;
pub mod journal;
pub mod logs;
pub mod metrics;
pub mod timeline;

pub use dir::StateDir;
pub use journal::*;
pub use logs::LogDir;
