//! The standard `process_*` metrics of client_golang, with its names, types,
//! help texts and units, read from `/proc/self`, written by the
//! [`encoder`]: the metrics crate's counters are integers, so
//! `process_cpu_seconds_total` could only be a truncated counter or a gauge
//! there, and client_golang has it as a fractional counter.

use std::path::Path;

use crate::bounded;
use crate::expose::encoder::{self, MetricType, Number};

/// What one read of `/proc/self` found; `None` where a file could not be read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// `/proc/<pid>/stat`: utime and stime (fields 14, 15), starttime (22) and
/// vsize (23), after the command name, which may hold spaces and parentheses.
pub fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse().ok();
    Some((field(14)?, field(15)?, field(22)?, field(23)?))
}

/// `btime` of `/proc/stat`: boot time, in seconds since the epoch.
pub fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads this process's figures.
pub fn read() -> ProcessStats {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let text = |path: &str| {
        bounded::read(Path::new(path), 64 * 1024)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let stat = text("/proc/self/stat").and_then(|s| parse_stat(&s));
    let btime = text("/proc/stat").and_then(|s| parse_btime(&s));
    let resident_pages =
        text("/proc/self/statm").and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    ProcessStats {
        cpu_seconds: stat.map(|(utime, stime, _, _)| (utime + stime) as f64 / ticks),
        resident_bytes: resident_pages.map(|p| p * page),
        virtual_bytes: stat.map(|(_, _, _, vsize)| vsize),
        open_fds,
        max_fds,
        start_time_seconds: stat
            .zip(btime)
            .map(|((_, _, start, _), boot)| boot as f64 + start as f64 / ticks),
    }
}

/// Appends the families in the text format; a value that could not be read
/// leaves its family out.
pub fn write(stats: &ProcessStats, out: &mut Vec<u8>) {
    use MetricType::{Counter, Gauge};
    let int = |v: Option<u64>| v.map(Number::Int);
    let families: [(&str, &str, MetricType, Option<Number>); 6] = [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            Counter,
            stats.cpu_seconds.map(Number::Float),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            Gauge,
            int(stats.open_fds),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            Gauge,
            int(stats.max_fds),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Gauge,
            int(stats.virtual_bytes),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Gauge,
            int(stats.resident_bytes),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Gauge,
            stats.start_time_seconds.map(Number::Float),
        ),
    ];
    for (name, help, kind, value) in families {
        if let Some(value) = value {
            encoder::header(out, name, help, kind);
            encoder::sample(out, name, "", value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_awkward_name() {
        let stat = "4242 (my (odd) exe) S 1 4242 4242 0 -1 4194560 1 0 0 0 \
                    150 25 0 0 20 0 9 0 123456 987654321 2000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((150, 25, 123456, 987654321)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_in_client_golangs_shape() {
        let stats = read();
        assert!(stats.cpu_seconds.is_some_and(|c| c >= 0.0));
        assert!(stats.resident_bytes.is_some_and(|r| r > 0));
        assert!(stats.open_fds.is_some_and(|n| n >= 3));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            stats
                .start_time_seconds
                .is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0)
        );
        let mut out = Vec::new();
        write(&stats, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ")
        );
        assert!(text.contains("# TYPE process_max_fds gauge\n"));
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 6);
    }
}
