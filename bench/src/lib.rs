//! The load harness behind `BENCHMARKS.md`: the `load` client and the `bench_server`
//! servers it measures, one per process (`src/bin/`).
//!
//! This library holds the pieces both binaries share: CPU pinning, the file-descriptor
//! limit, and the RFC 6455 masking function (the server unmasks with it, the client masks).
//!
//! ```text
//! cargo build --release -p tower-upgrade-bench
//! target/release/load --help
//! ```

use std::io;

/// Pins the calling thread to `cpu`. Call it first thing in `main`, before the tokio
/// runtime starts: threads started later inherit the mask.
///
/// Linux only (`sched_setaffinity`); elsewhere it does nothing.
///
/// # Errors
///
/// If `cpu` is out of range or the kernel refuses the mask.
#[cfg(target_os = "linux")]
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;

    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// Pins the calling thread to `cpu`: a no-op outside Linux.
///
/// # Errors
///
/// Never.
#[cfg(not(target_os = "linux"))]
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let _ = cpu;
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and returns the new soft limit.
///
/// Linux only; elsewhere it changes nothing and returns `u64::MAX` (no known limit).
///
/// # Errors
///
/// If the limit cannot be read or set.
#[cfg(target_os = "linux")]
pub fn raise_nofile_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Raises the soft `RLIMIT_NOFILE`: a no-op outside Linux, which returns `u64::MAX`.
///
/// # Errors
///
/// Never.
#[cfg(not(target_os = "linux"))]
pub fn raise_nofile_limit() -> io::Result<u64> {
    Ok(u64::MAX)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of the CPU times in
/// `/proc/PID/stat`; 100 where it cannot be read, and outside Linux.
#[must_use]
pub fn clock_ticks() -> f64 {
    #[cfg(target_os = "linux")]
    {
        use nix::unistd::{SysconfVar, sysconf};
        if let Ok(Some(hz)) = sysconf(SysconfVar::CLK_TCK)
            && hz > 0
        {
            return hz as f64;
        }
    }
    100.0
}

/// XORs `buf` with the 4-byte masking key (RFC 6455 §5.3), eight bytes at a time.
///
/// `buf` must start at the first byte of the payload: the key is applied from its index 0.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    // Both halves are the key, so this holds on either byte order.
    let m = u64::from(m) | (u64::from(m) << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]) ^ m;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key index restarts at 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}
