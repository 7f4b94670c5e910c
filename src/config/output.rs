//! What the exporter writes, resolved: `[labels]` (the owner label's name),
//! `[interfaces]` (which interfaces are exported) and `[log]` (how much is
//! logged).

use regex::Regex;
use serde::Deserialize;
use serde::de::IntoDeserializer;

use crate::config::ConfigError;
use crate::config::check::{invalid, text};
use crate::config::cli::Cli;
use crate::config::defaults::{self as d, LogLevel};
use crate::config::raw::{RawInterfaces, RawLabels, RawLog};
use crate::model::labels::{InterfaceFilter, LABEL_NAMES, OWNER_LABEL};

impl RawLog {
    /// `--log.level` is read as the file's key is, with the same names.
    pub(super) fn resolve(self, cli: &Cli) -> Result<LogLevel, ConfigError> {
        let flag = match cli.log_level.as_deref() {
            Some(name) => Some(LogLevel::deserialize(name.into_deserializer()).map_err(
                |_: serde::de::value::Error| {
                    let names: Vec<String> =
                        LogLevel::ALL.iter().map(|l| l.name().to_owned()).collect();
                    invalid(
                        d::LOG_LEVEL.flag.unwrap_or(d::LOG_LEVEL.key),
                        format!(
                            "unknown level {name:?}; write one of {}, such as --log.level={}",
                            names.join(", "),
                            d::LOG_LEVEL.default.name()
                        ),
                    )
                },
            )?),
            None => None,
        };
        Ok(flag.or(self.level).unwrap_or(d::LOG_LEVEL.default))
    }
}

impl RawLabels {
    /// The owner label's name.
    pub(super) fn resolve(self) -> Result<String, ConfigError> {
        let name = text(&d::OWNER_LABEL, self.owner_label);
        check_owner_label(&name)?;
        Ok(name)
    }
}

impl RawInterfaces {
    pub(super) fn resolve(self) -> Result<InterfaceFilter, ConfigError> {
        Ok(InterfaceFilter {
            include: regex(d::INCLUDE.key, self.include)?,
            exclude: regex(d::EXCLUDE.key, self.exclude)?,
        })
    }
}

/// A Prometheus label name that none of the exporter's other labels uses.
fn check_owner_label(name: &str) -> Result<(), ConfigError> {
    let valid = Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").is_ok_and(|r| r.is_match(name));
    if !valid || name.starts_with("__") {
        return Err(invalid(
            d::OWNER_LABEL.key,
            format!("{name:?} is not a valid Prometheus label name"),
        ));
    }
    if name != OWNER_LABEL && LABEL_NAMES.contains(&name) {
        return Err(invalid(
            d::OWNER_LABEL.key,
            format!("{name:?} is already one of the exporter's labels"),
        ));
    }
    Ok(())
}

/// A regex; empty: none.
fn regex(key: &'static str, value: Option<String>) -> Result<Option<Regex>, ConfigError> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Regex::new(&v)
            .map(Some)
            .map_err(|e| invalid(key, e.to_string())),
    }
}
