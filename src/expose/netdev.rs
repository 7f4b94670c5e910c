//! Parser for `/proc/<pid>/net/dev`: interface name plus the eight counters the
//! exporter publishes. Runs on every scrape, so it borrows from the input buffer
//! and never allocates.

/// Column of each published counter among the 16 numbers of a `net/dev` line
/// (rx: bytes packets errs drop fifo frame compressed multicast, then tx: bytes packets errs drop ...).
const COLUMNS: [usize; 8] = [0, 8, 1, 9, 2, 10, 3, 11];

/// The eight published counters of one interface: rx then tx bytes, packets,
/// errors, dropped, in the order of the counter families in
/// [`scrape::FAMILIES`](crate::scrape::FAMILIES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub values: [u64; 8],
}

/// One parsed line: `Ok((name, counters))`, or `Err(line)` for a malformed one.
pub type Line<'a> = Result<(&'a [u8], Counters), &'a [u8]>;

/// Iterates over the interface lines of a `net/dev` buffer, skipping the two
/// header lines and blank lines.
pub fn parse(buf: &[u8]) -> Parser<'_> {
    Parser {
        buf,
        pos: 0,
        line: 0,
    }
}

/// A one-pass cursor over a `net/dev` buffer. Hand-rolled because it runs for
/// every interface on every scrape: splitting lines, then fields, then parsing
/// each cost about 1.5x as much in the criterion bench.
pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Iterator for Parser<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        while self.pos < self.buf.len() {
            let start = self.pos;
            let line_no = self.line;
            self.line += 1;
            if let Some((name, counters, end)) = parse_at(self.buf, start) {
                self.pos = end + 1;
                return Some(Ok((name, counters)));
            }
            let end = self.buf[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(self.buf.len(), |n| start + n);
            self.pos = end + 1;
            let line = &self.buf[start..end];
            let header = line_no < 2 && line.contains(&b'|');
            if !(header || line.trim_ascii().is_empty()) {
                return Some(Err(line));
            }
        }
        None
    }
}

/// Parses one line (without its newline): `  name: n1 n2 ... n16`.
pub fn parse_line(line: &[u8]) -> Option<(&[u8], Counters)> {
    match parse_at(line, 0) {
        Some((name, counters, end)) if end >= line.len() => Some((name, counters)),
        _ => None,
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses the line starting at `start`; returns the name, the counters and the
/// index of the line's `\n` (or the buffer's end). Interface names cannot
/// contain `:` or whitespace (the kernel's `dev_valid_name`), so the first `:`
/// ends the name.
fn parse_at(buf: &[u8], start: usize) -> Option<(&[u8], Counters, usize)> {
    let mut i = start;
    while buf.get(i).copied().is_some_and(is_blank) {
        i += 1;
    }
    let name_start = i;
    while let Some(&b) = buf.get(i) {
        if b == b':' {
            break;
        }
        if b.is_ascii_whitespace() {
            return None;
        }
        i += 1;
    }
    if i == name_start || i == buf.len() {
        return None;
    }
    let name = &buf[name_start..i];
    i += 1;
    let mut fields = [0u64; 16];
    for field in &mut fields {
        while buf.get(i).copied().is_some_and(is_blank) {
            i += 1;
        }
        let (value, len) = parse_u64(&buf[i..])?;
        *field = value;
        i += len;
    }
    while buf
        .get(i)
        .copied()
        .is_some_and(|b| b.is_ascii_whitespace() && b != b'\n')
    {
        i += 1;
    }
    if i < buf.len() && buf[i] != b'\n' {
        return None;
    }
    let counters = Counters {
        values: COLUMNS.map(|c| fields[c]),
    };
    Some((name, counters, i))
}

/// Parses the leading decimal digits of `bytes`: `(value, digits consumed)`,
/// `None` if there are none, the number overflows u64, or a non-space follows.
fn parse_u64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    let mut len = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            if !b.is_ascii_whitespace() {
                return None;
            }
            break;
        }
        // 19 digits always fit; only a 20th can overflow.
        value = if len < 19 {
            value * 10 + u64::from(digit)
        } else {
            value.checked_mul(10)?.checked_add(u64::from(digit))?
        };
        len += 1;
    }
    (len > 0).then_some((value, len))
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
