//! The state directory of a chain and what lives in it.
//!
//! - [`dir`]: where it is, creating and checking it (as root, exit 77 when
//!   another user could steer it), the chain lock, and every file inside it
//!   opened without following symlinks, relative to one open directory.
//! - [`journal`]: the last run of the chain and the run-once markers, with
//!   a second durable copy of the markers.
//! - [`logs`]: per-run log folders and their pruning.
//!
//! This module must not decide anything about the chain: it records what
//! the chain tells it and answers what it recorded.

pub mod dir;
pub mod journal;
pub mod logs;

pub use dir::{StateDir, chain_name, resolve_dir};
pub use journal::*;
pub use logs::LogDir;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}
