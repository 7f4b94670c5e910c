//! The Prometheus text format for the families the exporter writes itself
//! (`net_interface_*`, `net_workload_*`, `process_*`): the `# HELP` and
//! `# TYPE` lines, the sample lines, and the one escaping rule for label
//! values. Label blocks are escaped once, when they are rendered (once per
//! composition, [`push_label`]); a sample line only copies its block, so a
//! scrape allocates nothing per line. The exporter's own metrics are
//! rendered by `metrics-exporter-prometheus` ([`crate::expose::telemetry`]).

use std::borrow::Cow;
use std::io::Write;

/// A family's `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        }
    }
}

/// A sample's value: an integer where the source counts (written exactly,
/// whatever its size), a float where it measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(u64),
    Float(f64),
}

impl From<u64> for Number {
    fn from(v: u64) -> Number {
        Number::Int(v)
    }
}

impl From<f64> for Number {
    fn from(v: f64) -> Number {
        Number::Float(v)
    }
}

/// Appends a family's `# HELP` and `# TYPE` lines.
pub fn header(out: &mut Vec<u8>, name: &str, help: &str, kind: MetricType) {
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    push_help(out, help);
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(b'\n');
}

/// Appends `name{labels} value`, or `name value` where `labels` is empty.
/// `labels` is a rendered block (`a="..",b=".."`), copied as it is.
#[inline]
pub fn sample(out: &mut Vec<u8>, name: &str, labels: &str, value: impl Into<Number>) {
    if labels.is_empty() {
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        push_number(out, value.into());
        out.push(b'\n');
    } else {
        sample_with(
            out,
            name,
            |out| out.extend_from_slice(labels.as_bytes()),
            value,
        );
    }
}

/// [`sample`] whose label block `labels` appends, for a block put
/// together from rendered parts (`net_interface_info`'s).
#[inline]
pub fn sample_with(
    out: &mut Vec<u8>,
    name: &str,
    labels: impl FnOnce(&mut Vec<u8>),
    value: impl Into<Number>,
) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'{');
    labels(out);
    out.extend_from_slice(b"} ");
    push_number(out, value.into());
    out.push(b'\n');
}

/// A value as the text format has it: integers in full, floats as Rust's
/// shortest round-trip form (never an exponent), and the special values
/// spelled as Prometheus parses them.
fn push_number(out: &mut Vec<u8>, value: Number) {
    match value {
        Number::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        Number::Float(v) if v.is_nan() => out.extend_from_slice(b"NaN"),
        Number::Float(v) if v.is_infinite() => {
            out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" })
        }
        // Writing into a Vec cannot fail.
        Number::Float(v) => {
            let _ = write!(out, "{v}");
        }
    }
}

/// A help text escaped as the format asks (`\` and line feeds only), copied
/// in runs between them rather than byte by byte: byte by byte, the headers
/// cost a 5-interface join half its time again (criterion, `benches/scrape.rs`).
fn push_help(out: &mut Vec<u8>, help: &str) {
    let mut rest = help.as_bytes();
    while let Some(at) = rest.iter().position(|&b| b == b'\\' || b == b'\n') {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(if rest[at] == b'\n' { b"\\n" } else { b"\\\\" });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// A label value as Prometheus reads it: the bytes when they are UTF-8;
/// bytes that are not (possible in kernel interface names) as `\xNN`, so two
/// names that differ only there stay two label values.
pub fn label_value(value: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(value) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for chunk in value.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    Cow::Owned(out)
}

/// Appends [`label_value`] of `value`, escaped for the text format.
pub fn push_escaped(out: &mut String, value: &[u8]) {
    for c in label_value(value).chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `name="value"`, the value escaped: one label of a block.
pub fn push_label(out: &mut String, name: &str, value: &[u8]) {
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value);
    out.push('"');
}

/// A label block of `pairs`, in order: `a="..",b=".."`.
pub fn render_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Box<str> {
    let mut s = String::with_capacity(96);
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_label(&mut s, name, value);
    }
    s.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(v: &[u8]) -> String {
        let mut s = String::new();
        push_escaped(&mut s, v);
        s
    }

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn label_values_are_what_prometheus_reads() {
        assert_eq!(label_value(b"veth0"), "veth0");
        assert_eq!(label_value("grüße".as_bytes()), "grüße");
        assert_eq!(label_value(b"veth\xff\"x"), "veth\\xff\"x");
    }

    #[test]
    fn escapes_per_text_format() {
        assert_eq!(esc(br#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(esc(b"line1\nline2"), r"line1\nline2");
        assert_eq!(esc("grüße-日本".as_bytes()), "grüße-日本");
        assert_eq!(esc(b"bad\xffname"), r"bad\\xffname");
        assert_ne!(esc(b"a\xffb"), esc(b"a\xfeb"), "invalid bytes stay apart");
    }

    #[test]
    fn writes_families_and_samples() {
        let labels = render_labels([("a", &b"x\"y"[..]), ("b", b"")]);
        assert_eq!(&*labels, r#"a="x\"y",b="""#);
        assert_eq!(
            text(|out| {
                header(
                    out,
                    "m_total",
                    "Things, one\\line\nanother.",
                    MetricType::Counter,
                );
                sample(out, "m_total", &labels, u64::MAX);
                sample(out, "m_total", "", 0u64);
            }),
            concat!(
                "# HELP m_total Things, one\\\\line\\nanother.\n",
                "# TYPE m_total counter\n",
                "m_total{a=\"x\\\"y\",b=\"\"} 18446744073709551615\n",
                "m_total 0\n",
            )
        );
        assert_eq!(
            text(|out| sample_with(out, "g", |out| out.extend_from_slice(b"k=\"v\""), 1u64)),
            "g{k=\"v\"} 1\n"
        );
    }

    #[test]
    fn floats_as_prometheus_parses_them() {
        let line = |v: f64| text(|out| sample(out, "g", "", v));
        assert_eq!(line(0.25), "g 0.25\n");
        assert_eq!(line(3.0), "g 3\n");
        assert_eq!(line(1e21), "g 1000000000000000000000\n");
        assert_eq!(line(f64::INFINITY), "g +Inf\n");
        assert_eq!(line(f64::NEG_INFINITY), "g -Inf\n");
        assert_eq!(line(f64::NAN), "g NaN\n");
    }
}
