//! What the centre sends, lasts: controller files saved as numbered
//! versions, and what operators set, saved beside them.
//!
//! For a daemon that runs a controllers directory, every definition the API
//! accepts is written to the intersection's controller file before it is
//! staged, so a restart or SIGHUP runs what was applied, and `greenwave
//! check` reads what runs. Beside it, `versions/<id>/` holds every saved
//! version (`000007.toml`, each a whole controller file with a comment
//! header saying who saved it, when, over which method) and
//! `operator.toml` (the mode and the plan selection, restored at start).
//!
//! A file is replaced only by rename from a temp file in its own directory,
//! fsynced before and after, so a crash or a full disk leaves either the old
//! file or the new one, never half of one. The file found on disk (the
//! engineer's, or one edited since the last save) is saved as a version
//! before it is replaced, so no edit is lost; the newest [`KEEP_SAVED`]
//! versions the API saved are kept, and those found on disk always.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::core::{Instant, OperatingMode};
pub use crate::engine::OperatorSettings;

/// Versions saved by the API that are kept per intersection (older ones
/// are removed; versions found on disk are never removed).
pub const KEEP_SAVED: usize = 50;

/// `saved_by` and `method` of a controller file found on disk.
pub const FOUND_ON_DISK: &str = "file";

/// The header keys, in the order they are written; a saved file's leading
/// `# key: value` lines with these keys are its header.
const HEADER_KEYS: [&str; 6] = ["greenwave-version", "saved-at", "saved-by", "method", "what", "versions"];

/// The operating modes as `operator.toml` names them.
const MODE_WORDS: [(OperatingMode, &str); 6] = [
    (OperatingMode::Scheduled, "scheduled"),
    (OperatingMode::Actuated, "actuated"),
    (OperatingMode::Coordinated, "coordinated"),
    (OperatingMode::Fixed, "fixed"),
    (OperatingMode::Flash, "flash"),
    (OperatingMode::Adaptive, "adaptive"),
];

/// A mode's word, as `operator.toml` and the audit record say it.
pub fn mode_word(mode: OperatingMode) -> &'static str {
    MODE_WORDS.iter().find(|(m, _)| *m == mode).map_or("scheduled", |(_, w)| w)
}

/// Why a save, or a read of what was saved, failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("version {0} is not kept")]
    NoSuchVersion(u64),
    #[error("{}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
}

impl SaveError {
    /// The disk or the quota is full: the save may work once space is freed.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SaveError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SaveError {
    let path = path.to_path_buf();
    move |source| SaveError::Io { action, path, source }
}

/// Who saved a version, when, how and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub saved_unix_ms: u64,
    /// A token's name and role ("tmc (operator)"), or [`FOUND_ON_DISK`].
    pub saved_by: String,
    /// The gRPC method, or [`FOUND_ON_DISK`].
    pub method: String,
    /// The change in words, as the audit record has it.
    pub what: String,
}

/// One saved version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedVersion {
    pub number: u64,
    pub provenance: Provenance,
    /// It is the controller file now.
    pub current: bool,
}

/// `operator.toml` as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawOperatorSettings {
    mode: Option<String>,
    plan: Option<u8>,
    plan_selected_unix_ms: Option<u64>,
    coordination_reference_unix_ms: Option<u64>,
}

/// One intersection's controller file and its saved versions.
#[derive(Clone, Debug)]
pub struct ControllerFile {
    file: PathBuf,
    /// `<dir>/versions/<id>/`.
    versions: PathBuf,
    /// `versions/<id>/`, as the header names it for people.
    versions_shown: String,
}

impl ControllerFile {
    /// The controller file `file` of intersection `id`.
    pub fn new(file: PathBuf, id: &str) -> ControllerFile {
        let dir = file.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        ControllerFile { versions: dir.join("versions").join(id), versions_shown: format!("versions/{id}/"), file }
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Saves `body` (a controller file that validated) as the next version
    /// and makes it the controller file; returns its number. The file found
    /// on disk is saved first when no version holds it.
    ///
    /// # Errors
    /// A directory or file could not be written: the controller file is
    /// then as it was.
    pub fn save(&self, body: &str, provenance: &Provenance) -> Result<u64, SaveError> {
        fs::create_dir_all(&self.versions).map_err(io_error("creating", &self.versions))?;
        let numbers = self.numbers()?;
        let mut latest = numbers.last().copied().unwrap_or(0);
        let on_disk = fs::read_to_string(&self.file).map_err(io_error("reading", &self.file))?;
        let held = match latest {
            0 => false,
            n => fs::read_to_string(self.version_path(n)).is_ok_and(|t| t == on_disk),
        };
        if !held {
            let found = Provenance {
                saved_unix_ms: provenance.saved_unix_ms,
                saved_by: FOUND_ON_DISK.into(),
                method: FOUND_ON_DISK.into(),
                what: format!("{} as found on disk", self.file.display()),
            };
            latest += 1;
            write_atomic(&self.version_path(latest), &self.render(latest, &found, body_of(&on_disk)))?;
        }
        let number = latest + 1;
        let text = self.render(number, provenance, body_of(body));
        let version = self.version_path(number);
        write_atomic(&version, &text)?;
        if let Err(e) = write_atomic(&self.file, &text) {
            // Not the controller file: not a version either.
            let _ = fs::remove_file(&version);
            return Err(e);
        }
        self.prune();
        Ok(number)
    }

    /// Every saved version, oldest first.
    ///
    /// # Errors
    /// The versions directory or a version cannot be read.
    pub fn list(&self) -> Result<Vec<SavedVersion>, SaveError> {
        let on_disk = fs::read_to_string(&self.file).map_err(io_error("reading", &self.file))?;
        self.numbers()?
            .into_iter()
            .map(|number| {
                let path = self.version_path(number);
                let text = fs::read_to_string(&path).map_err(io_error("reading", &path))?;
                let provenance = provenance_of(&text).ok_or_else(|| SaveError::Unreadable {
                    path: path.clone(),
                    reason: "no greenwave header (saved-at, saved-by, method, what)".into(),
                })?;
                Ok(SavedVersion { number, provenance, current: text == on_disk })
            })
            .collect()
    }

    /// Saved version `number`, without its header.
    ///
    /// # Errors
    /// [`SaveError::NoSuchVersion`] when it is not kept; a read error.
    pub fn body(&self, number: u64) -> Result<String, SaveError> {
        let path = self.version_path(number);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(body_of(&text).to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SaveError::NoSuchVersion(number)),
            Err(e) => Err(io_error("reading", &path)(e)),
        }
    }

    /// Saves what operators set (replacing what was saved).
    ///
    /// # Errors
    /// The file could not be written; what was saved before stays.
    pub fn save_operator(&self, settings: OperatorSettings) -> Result<(), SaveError> {
        let raw = RawOperatorSettings {
            mode: settings.mode.map(|m| mode_word(m).to_owned()),
            plan: settings.selected.map(|(n, _)| n),
            plan_selected_unix_ms: settings.selected.map(|(_, at)| at.as_millis()),
            coordination_reference_unix_ms: settings.coordination_reference.map(Instant::as_millis),
        };
        let path = self.operator_path();
        let toml =
            toml::to_string(&raw).map_err(|e| SaveError::Unreadable { path: path.clone(), reason: e.to_string() })?;
        let text = format!(
            "# What operators set over gRPC (SetMode; the plan an ApplyTimingPlan or SetCoordination\n\
             # activated; SetCoordination's reference), restored when the daemon starts. Written by greenwave.\n{toml}"
        );
        fs::create_dir_all(&self.versions).map_err(io_error("creating", &self.versions))?;
        write_atomic(&path, &text)
    }

    /// What operators set, as saved (`Default` when nothing was).
    ///
    /// # Errors
    /// The file cannot be read or is not what [`Self::save_operator`] writes.
    pub fn operator(&self) -> Result<OperatorSettings, SaveError> {
        let path = self.operator_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OperatorSettings::default()),
            Err(e) => return Err(io_error("reading", &path)(e)),
        };
        let unreadable = |reason: String| SaveError::Unreadable { path: path.clone(), reason };
        let raw: RawOperatorSettings = toml::from_str(&text).map_err(|e| unreadable(e.message().to_owned()))?;
        let mode = match raw.mode {
            Some(word) => Some(
                MODE_WORDS
                    .iter()
                    .find(|(_, w)| *w == word)
                    .map(|(m, _)| *m)
                    .ok_or_else(|| unreadable(format!("mode: unknown \"{word}\"")))?,
            ),
            None => None,
        };
        let selected = raw.plan.map(|n| (n, Instant::from_millis(raw.plan_selected_unix_ms.unwrap_or(0))));
        let coordination_reference = raw.coordination_reference_unix_ms.map(Instant::from_millis);
        Ok(OperatorSettings { mode, selected, coordination_reference })
    }

    fn operator_path(&self) -> PathBuf {
        self.versions.join("operator.toml")
    }

    fn version_path(&self, number: u64) -> PathBuf {
        self.versions.join(format!("{number:06}.toml"))
    }

    /// The numbers of the versions kept, ascending.
    fn numbers(&self) -> Result<Vec<u64>, SaveError> {
        let entries = match fs::read_dir(&self.versions) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("listing", &self.versions)(e)),
        };
        let mut numbers: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let stem = name.to_str()?.strip_suffix(".toml")?;
                stem.bytes().all(|b| b.is_ascii_digit()).then(|| stem.parse().ok()).flatten()
            })
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Removes the API's versions beyond the newest [`KEEP_SAVED`]; a
    /// version that cannot be removed is tried again at the next save.
    fn prune(&self) {
        let Ok(versions) = self.list() else { return };
        let saved: Vec<&SavedVersion> =
            versions.iter().filter(|v| v.provenance.method != FOUND_ON_DISK && !v.current).collect();
        let excess = (saved.len() + 1).saturating_sub(KEEP_SAVED);
        for v in saved.into_iter().take(excess) {
            if let Err(e) = fs::remove_file(self.version_path(v.number)) {
                tracing::warn!(version = v.number, error = %e, "old controller version not removed");
            }
        }
    }

    fn render(&self, number: u64, p: &Provenance, body: &str) -> String {
        let at = DateTime::<Utc>::from_timestamp_millis(i64::try_from(p.saved_unix_ms).unwrap_or(i64::MAX))
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let line = |s: &str| s.replace(['\r', '\n'], " ");
        format!(
            "# greenwave-version: {number}\n# saved-at: {at}\n# saved-by: {}\n# method: {}\n# what: {}\n\
             # versions: {} (every saved version; Control/ListVersions, Control/RollbackVersion)\n{body}",
            line(&p.saved_by),
            line(&p.method),
            line(&p.what),
            self.versions_shown,
        )
    }
}

/// The header's `# key: value` lines of a saved file, and the rest.
fn split_header(text: &str) -> (Vec<(&str, &str)>, &str) {
    let mut fields = Vec::new();
    let mut rest = text;
    while let Some((line, after)) = rest.split_once('\n') {
        let Some((key, value)) = line.strip_prefix("# ").and_then(|l| l.split_once(": ")) else { break };
        if !HEADER_KEYS.contains(&key) {
            break;
        }
        fields.push((key, value));
        rest = after;
    }
    (fields, rest)
}

/// A controller file without a greenwave header.
fn body_of(text: &str) -> &str {
    split_header(text).1
}

fn provenance_of(text: &str) -> Option<Provenance> {
    let (fields, _) = split_header(text);
    let field = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned());
    let at = DateTime::parse_from_rfc3339(&field("saved-at")?).ok()?;
    Some(Provenance {
        saved_unix_ms: u64::try_from(at.timestamp_millis()).unwrap_or(0),
        saved_by: field("saved-by")?,
        method: field("method")?,
        what: field("what")?,
    })
}

/// Replaces `path` with `text` so that a crash or a failed write leaves
/// the old file or the new one whole: a temp file in the same directory
/// (hidden, so a loader skips it), written and fsynced, renamed over
/// `path`, then the directory fsynced so the rename itself lasts.
///
/// # Errors
/// Any step failed; the temp file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), SaveError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let temp = dir.join(format!(".{name}.greenwave-{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = fs::File::create(&temp).map_err(io_error("creating", &temp))?;
        f.write_all(text.as_bytes()).map_err(io_error("writing", &temp))?;
        f.sync_all().map_err(io_error("syncing", &temp))?;
        fs::rename(&temp, path).map_err(io_error("renaming over", path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("syncing the directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "# the engineer's comment\n[intersection]\nid = \"elm-and-oak\"\n";

    fn by(what: &str, at: u64) -> Provenance {
        Provenance {
            saved_unix_ms: at,
            saved_by: "tmc (operator)".into(),
            method: "greenwave.v1.Control/ApplyTimingPlan".into(),
            what: what.into(),
        }
    }

    fn controller(dir: &Path) -> ControllerFile {
        fs::write(dir.join("elm-and-oak.toml"), BODY).unwrap();
        ControllerFile::new(dir.join("elm-and-oak.toml"), "elm-and-oak")
    }

    #[test]
    fn the_first_save_keeps_the_engineers_file_as_version_one() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let n =
            c.save("[intersection]\nid = \"elm-and-oak\"\nname = \"x\"\n", &by("plan 2", 1_765_000_000_123)).unwrap();
        assert_eq!(n, 2);
        let versions = c.list().unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].provenance.method, FOUND_ON_DISK);
        assert!(!versions[0].current);
        assert_eq!(c.body(1).unwrap(), BODY, "the engineer's text, comments and all");
        assert_eq!(versions[1].provenance, by("plan 2", 1_765_000_000_123));
        assert!(versions[1].current);
        let file = fs::read_to_string(c.path()).unwrap();
        assert!(file.starts_with("# greenwave-version: 2\n# saved-at: 2025-12-06T05:46:40.123Z\n"), "{file}");
        assert!(file.ends_with("name = \"x\"\n"), "{file}");
    }

    #[test]
    fn a_file_edited_on_disk_since_the_last_save_is_kept_before_it_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        c.save(BODY, &by("first", 1)).unwrap();
        fs::write(c.path(), "# edited by hand\n[intersection]\nid = \"elm-and-oak\"\n").unwrap();
        assert_eq!(c.save(BODY, &by("second", 2)).unwrap(), 4);
        assert_eq!(c.body(3).unwrap(), "# edited by hand\n[intersection]\nid = \"elm-and-oak\"\n");
        let methods: Vec<String> = c.list().unwrap().into_iter().map(|v| v.provenance.method).collect();
        assert_eq!(
            methods,
            [
                FOUND_ON_DISK,
                "greenwave.v1.Control/ApplyTimingPlan",
                FOUND_ON_DISK,
                "greenwave.v1.Control/ApplyTimingPlan"
            ]
        );
        // A rollback body carries no old header into the new file.
        assert_eq!(c.body(4).unwrap(), BODY);
    }

    #[test]
    fn only_the_newest_saved_versions_are_kept_and_files_found_on_disk_always() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        for k in 0..KEEP_SAVED as u64 + 5 {
            c.save(&format!("{BODY}# change {k}\n"), &by("change", k)).unwrap();
        }
        let versions = c.list().unwrap();
        assert_eq!(versions.len(), KEEP_SAVED + 1);
        assert_eq!(versions[0].number, 1, "the engineer's file");
        assert_eq!(versions[1].number, 7);
        assert!(versions.last().unwrap().current);
    }

    #[test]
    fn a_failed_save_leaves_the_controller_file_and_the_versions_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        // A file where the versions directory would be: no save can work.
        fs::write(dir.path().join("versions"), "").unwrap();
        let e = c.save("changed", &by("x", 1)).unwrap_err();
        assert!(e.to_string().starts_with("creating "), "{e}");
        assert!(!e.is_disk_full());
        assert_eq!(fs::read_to_string(c.path()).unwrap(), BODY);
        let flash = OperatorSettings { mode: Some(OperatingMode::Flash), ..OperatorSettings::default() };
        let e = c.save_operator(flash).unwrap_err();
        assert!(e.to_string().contains("versions"), "{e}");
    }

    #[test]
    fn the_operator_state_reads_back_as_saved() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        assert_eq!(c.operator().unwrap(), OperatorSettings::default());
        let settings = OperatorSettings {
            mode: Some(OperatingMode::Flash),
            selected: Some((2, Instant::from_millis(1_765_000_000_000))),
            coordination_reference: Some(Instant::from_millis(1_767_225_600_000)),
        };
        c.save_operator(settings).unwrap();
        assert_eq!(c.operator().unwrap(), settings);
        fs::write(dir.path().join("versions/elm-and-oak/operator.toml"), "mode = \"disco\"\n").unwrap();
        assert!(c.operator().unwrap_err().to_string().contains("unknown \"disco\""));
    }

    #[test]
    fn an_unknown_version_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        assert!(matches!(c.body(9), Err(SaveError::NoSuchVersion(9))));
    }
}
