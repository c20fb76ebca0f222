//! Paths into a configuration tree, and how they are shown to engineers.
//!
//! A [`KeyPath`] is structural (zero-based indexes), so the deserializer and
//! the validator can agree on "the same key" whatever the file says. It is
//! rendered against the parsed tree, which is where an element's identifying
//! key (`number`, `channel`, ...) is looked up; see [`super::error`] for the
//! format.

use std::fmt::Write as _;

use ::config::{Value, ValueKind};

/// Keys that identify an element of an array of tables, in preference order:
/// a `[[plan]]` has both `number` and `name`, and `number` is what the
/// schedule refers to.
const ID_KEYS: [&str; 8] = ["number", "channel", "input", "id", "detector", "date", "name", "at"];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }

    /// The path cut back to its last table key. That key is the unit the
    /// deserializer drops when a value is invalid: `calls[2]` being a string
    /// invalidates the whole `calls` list.
    pub(crate) fn up_to_last_key(&self) -> Option<KeyPath> {
        let last = self.0.iter().rposition(|s| matches!(s, Seg::Key(_)))?;
        Some(KeyPath(self.0[..=last].to_vec()))
    }

    /// The value at this path, if the tree has one.
    pub(crate) fn lookup<'t>(&self, tree: &'t Value) -> Option<&'t Value> {
        self.0.iter().try_fold(tree, |node, seg| match (seg, &node.kind) {
            (Seg::Key(k), ValueKind::Table(t)) => t.get(k),
            (Seg::Index(i), ValueKind::Array(a)) => a.get(*i),
            _ => None,
        })
    }

    /// Removes the value at this path (which must end in a key). Returns
    /// whether anything was removed.
    pub(crate) fn remove(&self, tree: &mut Value) -> bool {
        let Some((Seg::Key(last), parent)) = self.0.split_last() else { return false };
        let mut node = tree;
        for seg in parent {
            let next = match (seg, &mut node.kind) {
                (Seg::Key(k), ValueKind::Table(t)) => t.get_mut(k),
                (Seg::Index(i), ValueKind::Array(a)) => a.get_mut(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        match &mut node.kind {
            ValueKind::Table(t) => t.shift_remove(last).is_some(),
            _ => false,
        }
    }

    /// The key as engineers read it, e.g. `phase 2 (number 6).yellow_s`.
    pub(crate) fn render(&self, tree: &Value) -> String {
        let mut out = String::new();
        let mut node = Some(tree);
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                    node = node.and_then(|n| match &n.kind {
                        ValueKind::Table(t) => t.get(k),
                        _ => None,
                    });
                }
                Seg::Index(i) => {
                    let element = node.and_then(|n| match &n.kind {
                        ValueKind::Array(a) => a.get(*i),
                        _ => None,
                    });
                    match element.map(|e| &e.kind) {
                        Some(ValueKind::Table(t)) => {
                            let _ = write!(out, " {}", i + 1);
                            if let Some((k, v)) = identity(t) {
                                let _ = write!(out, " ({k} {v})");
                            }
                        }
                        _ => {
                            let _ = write!(out, "[{}]", i + 1);
                        }
                    }
                    node = element;
                }
            }
        }
        out
    }

    /// The environment variable that sets this key in the daemon config
    /// (`GREENWAVE_EVENT_LOG__DIR` for `event_log.dir`).
    pub(crate) fn env_var(&self, prefix: &str) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|s| match s {
                Seg::Key(k) => k.to_uppercase(),
                Seg::Index(i) => i.to_string(),
            })
            .collect();
        format!("{prefix}_{}", parts.join("__"))
    }
}

/// The identifying key of a table and its value as written, if it has one
/// of a scalar type.
fn identity(table: &::config::Map<String, Value>) -> Option<(&'static str, String)> {
    ID_KEYS.iter().find_map(|&k| {
        let v = match &table.get(k)?.kind {
            ValueKind::String(s) => s.clone(),
            ValueKind::I64(i) => i.to_string(),
            ValueKind::U64(i) => i.to_string(),
            _ => return None,
        };
        Some((k, v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::config::{Config, File, FileFormat};

    fn tree(toml: &str) -> Value {
        Config::builder().add_source(File::from_str(toml, FileFormat::Toml)).build().expect("test TOML parses").cache
    }

    #[test]
    fn renders_positions_from_one_with_identity() {
        let t =
            tree("[sequence]\nrings = [[1, 2], [5, 6]]\n[[phase]]\nnumber = 2\n[[phase]]\nnumber = 6\nyellow_s = 1\n");
        let p = KeyPath::root().key("phase").index(1).key("yellow_s");
        assert_eq!(p.render(&t), "phase 2 (number 6).yellow_s");
        let r = KeyPath::root().key("sequence").key("rings").index(1).index(0);
        assert_eq!(r.render(&t), "sequence.rings[2][1]");
        assert_eq!(r.up_to_last_key(), Some(KeyPath::root().key("sequence").key("rings")));
    }

    #[test]
    fn removes_nested_keys() {
        let mut t = tree("[[phase]]\nnumber = 2\nyellow_s = \"x\"\n");
        let p = KeyPath::root().key("phase").index(0).key("yellow_s");
        assert!(p.lookup(&t).is_some());
        assert!(p.remove(&mut t));
        assert!(p.lookup(&t).is_none());
        assert!(!p.remove(&mut t));
    }

    #[test]
    fn env_var_names_use_the_double_underscore_separator() {
        assert_eq!(KeyPath::root().key("event_log").key("dir").env_var("GREENWAVE"), "GREENWAVE_EVENT_LOG__DIR");
    }
}
