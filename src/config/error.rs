//! What a configuration check reports: errors that stop a file from loading
//! and warnings that do not, both naming the file, the key and the reason.
//!
//! # Keys
//! Keys are written the way an engineer finds them in the file:
//! - tables and keys joined with dots: `sequence.rings`, `schedule.default_plan`;
//! - an element of an array of tables (`[[phase]]`, `[[detector]]`, inline
//!   tables in a list) by its position, counting from 1 in file order, then
//!   its identifying key when it has one: `phase 2 (number 6).yellow_s`,
//!   `detector 5 (channel 9).calls`, `schedule.day_plan 1 (name weekday)`;
//! - an element of a plain list by its position in brackets, again from 1:
//!   `sequence.rings[2]`, `sequence.conflicts[1]`.
//!
//! An empty key means the whole file (it could not be read or parsed).

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem that stops a controller (or the daemon) configuration loading.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", Located { file: &self.file, key: &self.key, reason: &self.reason })]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

/// Something legal but suspicious: reported, never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError { file: file.to_path_buf(), key: key.into(), reason: reason.into() }
    }
}

impl Warning {
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Warning { file: file.to_path_buf(), key: key.into(), reason: reason.into() }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Located { file: &self.file, key: &self.key, reason: &self.reason }.fmt(f)
    }
}

/// `file: key: reason`, or `file: reason` for problems with the whole file.
struct Located<'a> {
    file: &'a Path,
    key: &'a str,
    reason: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_key_reason() {
        let e = ConfigError::new(Path::new("controllers/x.toml"), "phase 1 (number 2).yellow_s", "too short");
        assert_eq!(e.to_string(), "controllers/x.toml: phase 1 (number 2).yellow_s: too short");
        let w = Warning::new(Path::new("x.toml"), "", "empty");
        assert_eq!(w.to_string(), "x.toml: empty");
    }
}
