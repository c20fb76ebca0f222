//! `greenwave check [paths]`: validate controller files without running
//! them, and print what an engineer needs to fix, one line per problem.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::error::{ConfigError, Warning};
use super::load::{check_files, controller_files, no_controllers};

/// The outcome of checking a set of controller files.
#[derive(Debug)]
pub struct CheckReport {
    pub files: Vec<FileCheck>,
}

/// One checked file (or a directory that could not be listed or was empty).
#[derive(Debug)]
pub struct FileCheck {
    pub path: PathBuf,
    /// What the file defines, when it has no errors.
    pub summary: Option<Summary>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Warning>,
}

/// Counts shown on a file's `ok` line.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub id: String,
    pub phases: usize,
    pub detectors: usize,
    pub plans: usize,
    /// `[intersection] location`, when written.
    pub location: Option<super::Location>,
}

/// Checks every path: a file, or a directory whose `*.toml` files are
/// checked in name order. Intersection ids must be unique across them all.
pub fn check_report(paths: &[PathBuf]) -> CheckReport {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for path in paths {
        if path.is_dir() {
            match controller_files(path) {
                Ok(found) if found.is_empty() => unreadable.push(FileCheck::failed(path.clone(), no_controllers(path))),
                Ok(found) => files.extend(found),
                Err(e) => unreadable.push(FileCheck::failed(path.clone(), e)),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut report: Vec<FileCheck> = check_files(&files)
        .into_iter()
        .map(|(path, checked)| FileCheck {
            path,
            summary: checked.config.map(|c| Summary {
                id: c.spec.id.clone(),
                phases: c.spec.phases.len(),
                detectors: c.spec.detectors.len(),
                plans: c.spec.plans.len(),
                location: c.location,
            }),
            errors: checked.errors,
            warnings: checked.warnings,
        })
        .collect();
    report.extend(unreadable);
    CheckReport { files: report }
}

impl FileCheck {
    fn failed(path: PathBuf, error: ConfigError) -> Self {
        FileCheck { path, summary: None, errors: vec![error], warnings: Vec::new() }
    }
}

impl CheckReport {
    pub fn has_errors(&self) -> bool {
        self.files.iter().any(|f| !f.errors.is_empty())
    }

    pub fn error_count(&self) -> usize {
        self.files.iter().map(|f| f.errors.len()).sum()
    }

    pub fn warning_count(&self) -> usize {
        self.files.iter().map(|f| f.warnings.len()).sum()
    }

    /// One line per error and warning, an `ok` line per good file, and a
    /// closing count, e.g.
    /// ```text
    /// controllers/broken.toml: error: phase 4 (number 4).yellow_s: 2.5 s is below ...
    /// controllers/broadway-and-5th.toml: ok (8 phases, 16 detectors, 4 plans, at 22.5431, 114.0579)
    /// 3 files checked, 1 with errors (7 errors, 1 warning)
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            for e in &f.errors {
                line(&mut out, &f.path, "error", &e.key, &e.reason);
            }
            for w in &f.warnings {
                line(&mut out, &f.path, "warning", &w.key, &w.reason);
            }
            if let (Some(s), true) = (&f.summary, f.errors.is_empty()) {
                let at = s.location.map(|l| format!(", at {}, {}", l.lat, l.lon)).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{}: ok ({}, {}, {}{at})",
                    f.path.display(),
                    plural(s.phases, "phase"),
                    plural(s.detectors, "detector"),
                    plural(s.plans, "plan")
                );
            }
        }
        let failed = self.files.iter().filter(|f| !f.errors.is_empty()).count();
        let _ = writeln!(
            out,
            "{} checked, {failed} with errors ({}, {})",
            plural(self.files.len(), "file"),
            plural(self.error_count(), "error"),
            plural(self.warning_count(), "warning")
        );
        out
    }
}

fn line(out: &mut String, file: &std::path::Path, level: &str, key: &str, reason: &str) {
    let _ = write!(out, "{}: {level}: ", file.display());
    if !key.is_empty() {
        let _ = write!(out, "{key}: ");
    }
    // Multi-line reasons (TOML syntax errors with their caret) stay
    // readable under the file name.
    let mut lines = reason.lines();
    let _ = writeln!(out, "{}", lines.next().unwrap_or_default());
    for l in lines {
        let _ = writeln!(out, "    {l}");
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}
