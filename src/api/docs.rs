//! The controller definitions as the API changes them.
//!
//! A plan pushed over gRPC is checked by exactly the code behind
//! `greenwave check`: the intersection's current controller file (as TOML)
//! with that one `[[plan]]` replaced is validated as a whole file. So a
//! plan is judged with the phases, clearances and schedule it will run
//! with, and errors name the same keys an engineer sees in `check`.
//!
//! Each intersection keeps its current document (the TOML table), its
//! validated config and a version: 1 at start, +1 for every accepted change
//! (API or SIGHUP reload). Changes to one intersection are serialised by a
//! lock held only while validating; readers take the current config
//! wait-free from an `ArcSwap`.
//!
//! When the daemon runs a controllers directory, each document knows its
//! controller file ([`ControllerFile`]): a change is saved there before it
//! is staged (`super::control`), so a SIGHUP reload or a restart runs it.
//! Without one (the embedded default, definitions built in code) changes
//! live in memory only.

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::IntersectionConfig;

use super::versions::ControllerFile;

/// Where an intersection's definition came from, as the daemon loaded it.
#[derive(Clone, Debug)]
pub struct ControllerSource {
    pub config: IntersectionConfig,
    /// Names the file in validation messages, e.g. `controllers/elm-and-oak.toml`.
    pub file_name: String,
    /// The file's text.
    pub toml: String,
    /// Where accepted changes are saved; `None`: they live in memory.
    pub file: Option<ControllerFile>,
}

/// The definition in force (or staged for the next barrier).
#[derive(Debug)]
pub struct Current {
    pub config: IntersectionConfig,
    pub version: u64,
}

/// The editable document of one intersection.
#[derive(Debug)]
pub struct Doc {
    pub file_name: String,
    pub table: toml::Table,
    pub version: u64,
    /// Where accepted changes are saved; `None`: they live in memory.
    pub file: Option<ControllerFile>,
}

#[derive(Debug)]
struct Slot {
    doc: Mutex<Doc>,
    current: ArcSwap<Current>,
}

/// Every intersection's document.
#[derive(Debug)]
pub struct Docs {
    slots: Vec<Slot>,
}

/// A controller file the daemon loaded but that does not parse as TOML
/// here (a bug: it validated a moment ago).
#[derive(Debug, thiserror::Error)]
#[error("{file}: not valid TOML for the API's plan editor: {source}")]
pub struct DocError {
    file: String,
    source: toml::de::Error,
}

/// An intersection's document, locked for one change.
#[derive(Debug)]
pub struct DocEdit<'a> {
    doc: MutexGuard<'a, Doc>,
    current: &'a ArcSwap<Current>,
}

impl Docs {
    /// # Errors
    /// A source's text does not parse as TOML.
    pub fn new(sources: Vec<ControllerSource>) -> Result<Docs, DocError> {
        let slots = sources
            .into_iter()
            .map(|s| {
                let table = parse(&s.file_name, &s.toml)?;
                Ok(Slot {
                    doc: Mutex::new(Doc { file_name: s.file_name, table, version: 1, file: s.file }),
                    current: ArcSwap::from_pointee(Current { config: s.config, version: 1 }),
                })
            })
            .collect::<Result<_, DocError>>()?;
        Ok(Docs { slots })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The current definition of intersection `i` (panics on an index the
    /// caller did not get from this daemon's intersections).
    pub fn current(&self, i: usize) -> Arc<Current> {
        self.slots[i].current.load_full()
    }

    /// Locks intersection `i`'s document for a change.
    pub fn edit(&self, i: usize) -> DocEdit<'_> {
        let slot = &self.slots[i];
        DocEdit { doc: slot.doc.lock().unwrap_or_else(|e| e.into_inner()), current: &slot.current }
    }

    /// A SIGHUP reload staged `config` from `text`: it replaces whatever
    /// the API changed. Returns the new version.
    pub fn reloaded(&self, i: usize, config: IntersectionConfig, text: &str) -> u64 {
        let mut edit = self.edit(i);
        let table = match parse(&edit.doc.file_name, text) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "reloaded controller kept out of the API's plan editor");
                edit.doc.table.clone()
            }
        };
        edit.commit(table, config)
    }
}

impl DocEdit<'_> {
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The version the next [`Self::commit`] makes.
    pub fn next_version(&self) -> u64 {
        self.doc.version + 1
    }

    /// Makes `table` (validated as `config`) the document; returns the new
    /// version, which `config`'s spec now carries.
    pub fn commit(&mut self, table: toml::Table, mut config: IntersectionConfig) -> u64 {
        config.spec.version = self.next_version();
        self.doc.version += 1;
        self.doc.table = table;
        self.current.store(Arc::new(Current { config, version: self.doc.version }));
        self.doc.version
    }
}

fn parse(file: &str, text: &str) -> Result<toml::Table, DocError> {
    text.parse::<toml::Table>().map_err(|source| DocError { file: file.to_owned(), source })
}
