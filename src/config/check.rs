//! What the sections share when they resolve a value: the value given, else
//! its [`Setting`]'s default, checked the same way for every key of its kind
//! (no zero durations, counts or sizes; a command that names a program).

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::defaults::{self as d, Bytes, Setting};

pub(super) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// "must be greater than zero", with an example of `key`.
fn not_zero(key: &'static str) -> ConfigError {
    let example = d::example(key)
        .map(|e| format!(", such as {e}"))
        .unwrap_or_default();
    invalid(key, format!("must be greater than zero{example}"))
}

/// A text value, or its default.
pub(super) fn text(setting: &Setting<&'static str>, value: Option<String>) -> String {
    value.unwrap_or_else(|| setting.default.to_owned())
}

/// A path, or its default.
pub(super) fn path(setting: &Setting<&'static str>, value: Option<PathBuf>) -> PathBuf {
    value.unwrap_or_else(|| setting.default.into())
}

/// A duration, or its default; never zero.
pub(super) fn duration(
    setting: &Setting<Duration>,
    value: Option<Duration>,
) -> Result<Duration, ConfigError> {
    match value {
        Some(d) if d.is_zero() => Err(not_zero(setting.key)),
        Some(d) => Ok(d),
        None => Ok(setting.default),
    }
}

/// A count: its value, or the default; never zero.
pub(super) fn count(setting: &Setting<usize>, value: Option<usize>) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(not_zero(setting.key)),
        Some(v) => Ok(v),
        None => Ok(setting.default),
    }
}

/// A size in bytes: its value, or the default; never zero.
pub(super) fn positive(
    setting: &Setting<Bytes>,
    value: Option<usize>,
) -> Result<usize, ConfigError> {
    match value {
        Some(0) => Err(not_zero(setting.key)),
        Some(v) => Ok(v),
        None => Ok(setting.default.0),
    }
}

/// The bytes of a size whose zero means nothing special (caps of API answers).
pub(super) fn bytes(setting: &Setting<Bytes>, value: Option<usize>) -> usize {
    value.unwrap_or(setting.default.0)
}

/// A command line from the config: a program and its arguments.
pub(super) fn program(
    setting: &Setting<&'static [&'static str]>,
    value: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    match value {
        Some(v) if v.first().is_none_or(String::is_empty) => {
            Err(invalid(setting.key, "must name a program"))
        }
        Some(v) => Ok(v),
        None => Ok(setting.default.iter().map(|s| s.to_string()).collect()),
    }
}
