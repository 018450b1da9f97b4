//! Helpers for tests that run an example as a separate process.

use std::path::PathBuf;
use std::process::Command;

/// The `echo` example binary, which `cargo test` builds next to the test binaries.
pub fn echo_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("echo{}", std::env::consts::EXE_SUFFIX))
}

/// Sends SIGTERM to process `pid` with `kill`, and checks that `kill` succeeded.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
