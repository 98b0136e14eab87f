//! Reading one variable as its [`Var`] entry says: its default, its bounds, the
//! error that names it.

use std::time::Duration;

use super::vars::{self, Var};
use super::{ConfigError, Secret};

/// Reads variables as the table describes them. Blank values count as unset.
pub(super) struct Env<'a>(pub(super) &'a dyn Fn(&str) -> Option<String>);

impl Env<'static> {
    pub(super) fn process() -> Self {
        Env(&|name| std::env::var(name).ok())
    }
}

impl Env<'_> {
    pub(super) fn raw(&self, var: &Var) -> Option<String> {
        (self.0)(var.name).filter(|v| !v.trim().is_empty())
    }

    pub(super) fn text(&self, var: &Var) -> Option<String> {
        self.raw(var)
    }

    pub(super) fn text_or_default(&self, var: &Var) -> String {
        match (self.raw(var), var.kind) {
            (Some(v), _) => v,
            (None, vars::Kind::Text { default }) => default.unwrap_or_default().to_string(),
            (None, kind) => unreachable!("{} is not text: {kind:?}", var.name),
        }
    }

    pub(super) fn secret(&self, var: &Var) -> Option<Secret> {
        self.raw(var).map(Secret)
    }

    pub(super) fn count<T: TryFrom<u64>>(&self, var: &Var) -> Result<T, ConfigError> {
        let vars::Kind::Count {
            default, min, max, ..
        } = var.kind
        else {
            unreachable!("{} is not a count", var.name)
        };
        let n = match self.raw(var) {
            None => default,
            Some(value) => match value.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => n,
                _ => return Err(var.error(&value)),
            },
        };
        // Within the table's bounds, which fit the field's type.
        T::try_from(n).map_err(|_| var.error(&n.to_string()))
    }

    pub(super) fn seconds(&self, var: &Var) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.count(var)?))
    }

    pub(super) fn millis_or_off(&self, var: &Var) -> Result<Option<Duration>, ConfigError> {
        Ok(match self.count(var)? {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        })
    }

    pub(super) fn flag(&self, var: &Var) -> Result<bool, ConfigError> {
        let vars::Kind::Flag { default } = var.kind else {
            unreachable!("{} is not a flag", var.name)
        };
        self.flag_or(var, default)
    }

    pub(super) fn flag_or(&self, var: &Var, default: bool) -> Result<bool, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(var.error(&value)),
            },
        }
    }

    pub(super) fn choice(&self, var: &Var) -> Result<&'static str, ConfigError> {
        let vars::Kind::Choice { default, options } = var.kind else {
            unreachable!("{} is not a choice", var.name)
        };
        match self.raw(var) {
            None => Ok(default),
            Some(value) => options
                .iter()
                .find(|o| o.eq_ignore_ascii_case(value.trim()))
                .copied()
                .ok_or_else(|| var.error(&value)),
        }
    }

    pub(super) fn parsed<T: std::str::FromStr>(&self, var: &Var) -> Result<Option<T>, ConfigError> {
        let vars::Kind::Parsed { default, .. } = var.kind else {
            unreachable!("{} is not parsed", var.name)
        };
        match self.raw(var).or(default.map(str::to_string)) {
            None => Ok(None),
            Some(value) => value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| var.error(&value)),
        }
    }
}
