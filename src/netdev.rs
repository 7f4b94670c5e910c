//! Parser for `/proc/<pid>/net/dev`: interface name plus the eight counters the
//! exporter publishes. Runs on every scrape, so it borrows from the input buffer
//! and never allocates.

/// Indexes into [`Counters::values`], in the order the metrics are written.
pub const COUNTER_NAMES: [(&str, &str); 8] = [
    ("net_interface_rx_bytes_total", "Total bytes received."),
    ("net_interface_tx_bytes_total", "Total bytes transmitted."),
    ("net_interface_rx_packets_total", "Total packets received."),
    (
        "net_interface_tx_packets_total",
        "Total packets transmitted.",
    ),
    ("net_interface_rx_errors_total", "Total receive errors."),
    ("net_interface_tx_errors_total", "Total transmit errors."),
    (
        "net_interface_rx_dropped_total",
        "Total received packets dropped.",
    ),
    (
        "net_interface_tx_dropped_total",
        "Total transmitted packets dropped.",
    ),
];

/// Column of each published counter among the 16 numbers of a `net/dev` line
/// (rx: bytes packets errs drop fifo frame compressed multicast, then tx: bytes packets errs drop ...).
const COLUMNS: [usize; 8] = [0, 8, 1, 9, 2, 10, 3, 11];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub values: [u64; 8],
}

/// One parsed line: `Ok((name, counters))`, or `Err(line)` for a malformed one.
pub type Line<'a> = Result<(&'a [u8], Counters), &'a [u8]>;

/// Iterates over the interface lines of a `net/dev` buffer, skipping the two
/// header lines and blank lines.
pub fn parse(buf: &[u8]) -> impl Iterator<Item = Line<'_>> {
    buf.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(i, line)| !(line.is_empty() || *i < 2 && line.contains(&b'|')))
        .map(|(_, line)| parse_line(line).ok_or(line))
}

/// Parses `  name: n1 n2 ... n16`. Interface names cannot contain `:` or
/// whitespace (the kernel's `dev_valid_name`), so the first `:` ends the name.
pub fn parse_line(line: &[u8]) -> Option<(&[u8], Counters)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii();
    if name.is_empty() {
        return None;
    }
    let mut fields = [0u64; 16];
    let mut n = 0;
    for field in line[colon + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
    {
        if n == 16 {
            return None;
        }
        fields[n] = parse_u64(field)?;
        n += 1;
    }
    if n != 16 {
        return None;
    }
    Some((
        name,
        Counters {
            values: COLUMNS.map(|c| fields[c]),
        },
    ))
}

/// Decimal digits only, overflow-checked. Hand-written because `str::parse`
/// would first need a UTF-8 check of every field on the hot path.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1234567      890    0    0    0     0          0         0  1234567      890    0    0    0     0       0          0
enp8s0f0: 1111594096922 987654321 1 2 0 0 0 12 222 333 4 5 0 0 0 0
";

    #[test]
    fn parses_real_layout() {
        let lines: Vec<_> = parse(SAMPLE.as_bytes()).collect();
        assert_eq!(lines.len(), 2);
        let (name, c) = lines[1].unwrap();
        assert_eq!(name, b"enp8s0f0");
        // rx_bytes tx_bytes rx_packets tx_packets rx_errs tx_errs rx_drop tx_drop
        assert_eq!(c.values, [1111594096922, 222, 987654321, 333, 1, 4, 2, 5]);
        assert_eq!(lines[0].unwrap().0, b"lo");
    }

    #[test]
    fn max_counter_and_overflow() {
        let max = u64::MAX;
        let line = format!("x: {max} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0");
        assert_eq!(parse_line(line.as_bytes()).unwrap().1.values[0], max);
        let over = "x: 18446744073709551616 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert!(parse_line(over.as_bytes()).is_none());
    }

    #[test]
    fn malformed_lines_are_reported_not_fatal() {
        let buf = b"h1 |\nh2 |\n\
            ok: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
            short: 1 2 3\n\
            long: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n\
            neg: -1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
            no colon here\n\
            : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
            \xff\xfe: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
            garbage|with pipe\n";
        let (ok, bad): (Vec<_>, Vec<_>) = parse(buf).partition(|l| l.is_ok());
        let names: Vec<_> = ok.iter().map(|l| l.unwrap().0).collect();
        assert_eq!(names, [&b"ok"[..], &b"\xff\xfe"[..]]);
        assert_eq!(bad.len(), 6);
    }

    #[test]
    fn empty_and_header_only() {
        assert_eq!(parse(b"").count(), 0);
        assert_eq!(
            parse(
                SAMPLE
                    .lines()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .as_bytes()
            )
            .count(),
            0
        );
    }
}
