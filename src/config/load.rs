//! Reading controller files: config-rs parses the TOML, [`super::de`] turns
//! the tree into raw structs, [`super::validate`] checks it.
//!
//! Reload is the caller's loop around these functions: load the new file,
//! and on `Err` keep running the previous [`IntersectionConfig`] and report
//! the errors. Nothing here holds state between calls.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ::config::{Config, File, FileFormat, ValueKind};

use crate::core::MAX_DETECTORS;
use crate::core::ids::{MAX_OVERLAPS, MAX_PHASES};

use super::IntersectionConfig;
use super::de::deserialize_all;
use super::error::{ConfigError, Warning};
use super::raw::RawController;
use super::validate::{Checked, validate};

/// Loads and validates one controller file.
pub fn load_intersection(path: &Path) -> Result<(IntersectionConfig, Vec<Warning>), Vec<ConfigError>> {
    check_file(path).into_result()
}

/// Loads and validates a controller file from text, e.g. one embedded with
/// `include_str!`. `name` stands for the file in every error and warning.
pub fn load_intersection_str(name: &str, toml: &str) -> Result<(IntersectionConfig, Vec<Warning>), Vec<ConfigError>> {
    check_source(Path::new(name), toml).into_result()
}

/// Loads every `*.toml` directly in `dir`, in file-name order, each with its
/// own warnings. All files are checked and all their errors returned; two
/// files with the same intersection id are an error too.
pub fn load_dir(dir: &Path) -> Result<Vec<(IntersectionConfig, Vec<Warning>)>, Vec<ConfigError>> {
    let files = controller_files(dir).map_err(|e| vec![e])?;
    if files.is_empty() {
        return Err(vec![no_controllers(dir)]);
    }
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for (_, checked) in check_files(&files) {
        match checked.into_result() {
            Ok(ok) => loaded.push(ok),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() { Ok(loaded) } else { Err(errors) }
}

impl Checked {
    fn into_result(self) -> Result<(IntersectionConfig, Vec<Warning>), Vec<ConfigError>> {
        match self.config {
            Some(config) if self.errors.is_empty() => Ok((config, self.warnings)),
            _ => Err(self.errors),
        }
    }
}

/// The `*.toml` files directly in `dir`, sorted by name. Hidden files
/// (`.name.toml`: editors' swap and backup copies, a file being written by a
/// deploy tool) are skipped, each with a warning: loading one would run a
/// copy nobody meant to run.
///
/// # Errors
/// `dir` cannot be read.
pub fn controller_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries =
        fs::read_dir(dir).map_err(|e| ConfigError::new(dir, "", format!("cannot read the directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                tracing::warn!(file = %p.display(), "skipped: a hidden file is never loaded (rename it to load it)");
            }
            !hidden
        })
        .collect();
    files.sort();
    Ok(files)
}

pub(crate) fn no_controllers(dir: &Path) -> ConfigError {
    ConfigError::new(dir, "", "no controller files (*.toml) in this directory")
}

/// Checks each file, then the ids across them: an id is the signal id in
/// the event log, so two controllers must never share one.
pub(crate) fn check_files(files: &[PathBuf]) -> Vec<(PathBuf, Checked)> {
    let mut checked: Vec<(PathBuf, Checked)> = files.iter().map(|f| (f.clone(), check_file(f))).collect();
    let mut first_with_id: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (path, c) in &mut checked {
        let Some(id) = c.config.as_ref().map(|cfg| cfg.spec.id.clone()) else { continue };
        match first_with_id.get(&id) {
            Some(first) => {
                c.errors.push(ConfigError::new(
                    path,
                    "intersection.id",
                    format!("\"{id}\" is also the id of {}: ids must be unique", first.display()),
                ));
                c.config = None;
            }
            None => {
                first_with_id.insert(id, path.clone());
            }
        }
    }
    checked
}

pub(crate) fn check_file(path: &Path) -> Checked {
    // Read once: what is validated is what runs and what the API edits.
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            let error = ConfigError::new(path, "", format!("cannot read the file: {e}"));
            return Checked { config: None, errors: vec![error], warnings: Vec::new() };
        }
    };
    let mut checked = check_source(path, &text);
    // controllers/<id>.toml: a file named after another id is a copy that
    // was not fully edited, more often than not.
    if let (Some(cfg), Some(stem)) = (&checked.config, path.file_stem().and_then(|s| s.to_str()))
        && cfg.spec.id != stem
    {
        checked.warnings.push(Warning::new(
            path,
            "intersection.id",
            format!("\"{}\" differs from the file name \"{stem}\" (controllers/<id>.toml)", cfg.spec.id),
        ));
    }
    checked
}

fn check_source(file: &Path, text: &str) -> Checked {
    match Config::builder().add_source(File::from_str(text, FileFormat::Toml)).build() {
        Ok(config) => {
            let oversized = too_large(&config.cache);
            if !oversized.is_empty() {
                let errors = oversized.into_iter().map(|(key, reason)| ConfigError::new(file, key, reason)).collect();
                return Checked { config: None, errors, warnings: Vec::new() };
            }
            validate(&deserialize_all::<RawController>(config.cache), file, text)
        }
        Err(e) => {
            Checked { config: None, errors: vec![ConfigError::new(file, "", read_error(e))], warnings: Vec::new() }
        }
    }
}

/// The most tables of each kind a controller can use, and the longest any
/// list may be: a file past them is refused before it is validated (and so
/// in time linear in its size), with the key and the limit.
const TABLE_LIMITS: [(&str, usize); 4] =
    [("phase", MAX_PHASES), ("detector", MAX_DETECTORS), ("overlap", MAX_OVERLAPS), ("plan", 255)];
pub const MAX_LIST_LEN: usize = 1024;

/// Lists longer than a controller can use: `(key, reason)` for each.
fn too_large(tree: &::config::Value) -> Vec<(String, String)> {
    fn walk(v: &::config::Value, path: &str, out: &mut Vec<(String, String)>) {
        match &v.kind {
            ValueKind::Table(t) => {
                for (k, v) in t {
                    let at = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    let limit = if path.is_empty() { TABLE_LIMITS.iter().find(|(name, _)| name == k) } else { None };
                    match (&v.kind, limit) {
                        (ValueKind::Array(items), Some(&(name, most))) if items.len() > most => out
                            .push((at, format!("{} [[{name}]] tables: a controller has at most {most}", items.len()))),
                        _ => walk(v, &at, out),
                    }
                }
            }
            ValueKind::Array(items) if items.len() > MAX_LIST_LEN => {
                out.push((path.to_owned(), format!("{} entries: a list holds at most {MAX_LIST_LEN}", items.len())));
            }
            ValueKind::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}[{}]", i + 1), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(tree, "", &mut out);
    out
}

/// A config-rs error about the file as a whole, without the path config-rs
/// appends (ours is already in front).
pub(crate) fn read_error(e: ::config::ConfigError) -> String {
    match e {
        ::config::ConfigError::FileParse { cause, .. } => format!("not valid TOML: {}", cause.to_string().trim_end()),
        ::config::ConfigError::Foreign(cause) => cause.to_string(),
        other => other.to_string(),
    }
}
