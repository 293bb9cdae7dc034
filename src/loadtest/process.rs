//! CPU time, resident memory, threads and open file descriptors of a process, read from `/proc`
//! (Linux). The load generator samples the server's process, when it runs on this machine, and
//! its own, so that a busy generator is visible next to a busy server; a long run (a soak) reads
//! leaks off the slopes of memory, descriptors and threads.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux ABI we run.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// User plus system CPU time since the process started.
    pub cpu: Duration,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    pub threads: u64,
    /// Entries of `/proc/<pid>/fd` (sockets, files, pipes); 0 when not readable.
    pub open_fds: u64,
}

/// Reads `pid` (`None` for this process). `None` when the process is gone or `/proc` is not
/// there.
pub fn sample(pid: Option<u32>) -> Option<ProcessSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let open_fds =
        std::fs::read_dir(format!("{dir}/fd")).map_or(0, |entries| entries.count() as u64);
    Some(ProcessSample {
        cpu: cpu_from_stat(&stat)?,
        rss_bytes: rss_from_status(&status)?,
        threads: threads_from_status(&status).unwrap_or(0),
        open_fds,
    })
}

fn threads_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime (fields 14 and 15). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its closing parenthesis.
fn cpu_from_stat(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) / TICKS_PER_SECOND))
}

fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0";
        assert_eq!(cpu_from_stat(stat), Some(Duration::from_secs(3)));
        let status = "Name:\tvoxbridge\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t5\n";
        assert_eq!(rss_from_status(status), Some(2 * 1024 * 1024));
        assert_eq!(threads_from_status(status), Some(5));
    }

    #[test]
    fn reads_this_process() {
        let me = sample(None).expect("/proc/self is readable on Linux");
        assert!(me.rss_bytes > 0);
        assert!(me.threads >= 1);
        assert!(me.open_fds >= 3, "stdin, stdout, stderr at least");
    }
}
