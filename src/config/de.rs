//! Strict, path-tracking deserialization of a parsed configuration tree into
//! the raw structs, reporting every problem rather than the first.
//!
//! Why not `Config::try_deserialize`: config-rs converts leniently (a float
//! silently rounds into an integer field, `"yes"` becomes `true`, a number
//! becomes a string), stops at the first error, and cannot report unknown
//! keys (config-rs #450). For a signal timing file each of those hides a
//! mistake, so this deserializer:
//! - takes values as typed in the file; integers may stand for floats
//!   (`max1_s = 40`), nothing else converts. Values from the environment are
//!   text, so there (only) a number or boolean is parsed from its string;
//! - records every key a struct does not know, with its path and the closest
//!   known key;
//! - on a type error, records it, drops the offending key from the tree and
//!   deserializes again, so one bad value does not hide the next. The raw
//!   structs make every key optional (required keys are checked by
//!   `validate`), so dropping a key never creates a second error; the dropped
//!   keys are returned so `validate` does not also call them missing.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;

use ::config::{Value, ValueKind};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::key::KeyPath;

/// config-rs marks values taken from environment variables with this origin.
const ENV_ORIGIN: &str = "the environment";

/// A problem found while deserializing, not yet tied to a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: KeyPath,
    /// The key rendered for engineers (see `error` module docs).
    pub key: String,
    pub reason: String,
    /// The value came from an environment variable, not the file.
    pub from_env: bool,
}

/// The outcome of deserializing a tree.
#[derive(Debug)]
pub(crate) struct Deserialized<T> {
    pub value: T,
    /// The tree without the keys dropped for invalid values, for rendering keys.
    pub tree: Value,
    /// Keys dropped because their value was invalid (already reported).
    pub invalid: BTreeSet<KeyPath>,
    pub problems: Vec<Problem>,
    /// Stopped after [`MAX_INVALID_VALUES`]: `value` is a default, not the file.
    pub gave_up: bool,
}

/// Invalid values reported before giving up on a file: each costs a pass
/// over the whole tree, so a file of thousands (a generated or hostile one)
/// would take minutes to list them all.
pub(crate) const MAX_INVALID_VALUES: usize = 100;

/// Deserializes `tree` into `T`, collecting every type error and unknown key.
pub(crate) fn deserialize_all<T: DeserializeOwned + Default>(mut tree: Value) -> Deserialized<T> {
    let mut problems = Vec::new();
    let mut invalid = BTreeSet::new();
    loop {
        let unknown = RefCell::new(Vec::new());
        let result = T::deserialize(Strict { value: tree.clone(), path: KeyPath::root(), unknown: &unknown });
        match result {
            Ok(value) => {
                problems.extend(unknown.into_inner().into_iter().map(|u| Problem {
                    key: u.path.render(&tree),
                    from_env: u.path.lookup(&tree).is_some_and(is_from_env),
                    path: u.path,
                    reason: u.reason,
                }));
                return Deserialized { value, tree, invalid, problems, gave_up: false };
            }
            Err(e) => {
                if problems.len() == MAX_INVALID_VALUES {
                    problems.push(Problem {
                        path: KeyPath::root(),
                        key: String::new(),
                        reason: format!(
                            "more than {MAX_INVALID_VALUES} invalid values: stopped here (fix these first)"
                        ),
                        from_env: false,
                    });
                    return Deserialized { value: T::default(), tree, invalid, problems, gave_up: true };
                }
                let path = e.path.unwrap_or_default();
                problems.push(Problem {
                    key: path.render(&tree),
                    from_env: path.lookup(&tree).is_some_and(is_from_env),
                    path: path.clone(),
                    reason: e.message,
                });
                // Each pass removes one key, so this ends. A problem with no
                // key to drop (at the root) ends it with nothing deserialized;
                // it is reported, so the default value is never used.
                match path.up_to_last_key() {
                    Some(k) if k.remove(&mut tree) => {
                        invalid.insert(k);
                    }
                    _ => return Deserialized { value: T::default(), tree, invalid, problems, gave_up: false },
                }
            }
        }
    }
}

/// Whether config-rs took this value from an environment variable.
pub(crate) fn is_from_env(v: &Value) -> bool {
    v.origin() == Some(ENV_ORIGIN)
}

/// An unknown key: where, and what was probably meant.
struct Unknown {
    path: KeyPath,
    reason: String,
}

/// A deserialization error with the path of the value it is about.
#[derive(Debug)]
pub(crate) struct DeError {
    path: Option<KeyPath>,
    message: String,
}

impl DeError {
    /// Attaches `path` unless a deeper value already claimed the error.
    fn at(mut self, path: &KeyPath) -> Self {
        if self.path.is_none() {
            self.path = Some(path.clone());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { path: None, message: msg.to_string() }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {}, found {}", expected(exp), unexpected(&unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("{} is out of range, expected {}", unexpected(&unexp), expected(exp)))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {}, found a list of {len}", expected(exp)))
    }

    fn unknown_variant(variant: &str, options: &'static [&'static str]) -> Self {
        Self::custom(format_args!("\"{variant}\" is not one of {}", options.join(" | ")))
    }
}

/// serde's type names in engineer words.
fn expected(exp: &dyn de::Expected) -> String {
    let s = exp.to_string();
    match s.as_str() {
        "f64" | "f32" => "a number".into(),
        "u8" => "a whole number 0..=255".into(),
        "u16" => "a whole number 0..=65535".into(),
        "u32" | "u64" | "usize" => "a whole number ≥ 0".into(),
        "a boolean" => "true or false".into(),
        "a string" | "path string" => "a quoted string".into(),
        "a sequence" => "a list [...]".into(),
        "an array of length 2" => "a pair [a, b]".into(),
        _ if s.starts_with("struct ") || s.starts_with("a map") => "a table".into(),
        _ => s,
    }
}

fn unexpected(u: &de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Bool(b) => format!("{b}"),
        de::Unexpected::Unsigned(n) => format!("{n}"),
        de::Unexpected::Signed(n) => format!("{n}"),
        de::Unexpected::Float(x) => format!("{x}"),
        de::Unexpected::Str(s) => format!("\"{s}\""),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Map => "a table".into(),
        other => other.to_string(),
    }
}

/// The strict deserializer over one value of the tree.
struct Strict<'u> {
    value: Value,
    path: KeyPath,
    unknown: &'u RefCell<Vec<Unknown>>,
}

impl Strict<'_> {
    /// Text from the environment, if that is what this value is.
    fn env_text(&self) -> Option<&str> {
        match &self.value.kind {
            ValueKind::String(s) if is_from_env(&self.value) => Some(s),
            _ => None,
        }
    }

    fn parse_env<'de, T, V>(self, visitor: V, visit: fn(V, T) -> Result<V::Value, DeError>) -> Result<V::Value, DeError>
    where
        T: std::str::FromStr,
        V: Visitor<'de>,
    {
        match self.env_text().map(|s| s.trim().parse::<T>()) {
            Some(Ok(v)) => visit(visitor, v).map_err(|e| e.at(&self.path)),
            Some(Err(_)) => {
                let text = self.env_text().unwrap_or_default().to_owned();
                Err(<DeError as de::Error>::invalid_type(de::Unexpected::Str(&text), &visitor).at(&self.path))
            }
            None => self.any(visitor),
        }
    }

    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let result = match self.value.kind {
            ValueKind::Nil => visitor.visit_unit(),
            ValueKind::Boolean(b) => visitor.visit_bool(b),
            ValueKind::I64(i) => visitor.visit_i64(i),
            ValueKind::I128(i) => visitor.visit_i128(i),
            ValueKind::U64(u) => visitor.visit_u64(u),
            ValueKind::U128(u) => visitor.visit_u128(u),
            ValueKind::Float(x) => visitor.visit_f64(x),
            ValueKind::String(s) => visitor.visit_string(s),
            ValueKind::Array(items) => visitor.visit_seq(SeqAccess {
                items: items.into_iter().enumerate(),
                path: path.clone(),
                unknown: self.unknown,
            }),
            ValueKind::Table(t) => visitor.visit_map(MapAccess {
                entries: t.into_iter(),
                pending: None,
                path: path.clone(),
                unknown: self.unknown,
            }),
        };
        result.map_err(|e| e.at(&path))
    }
}

macro_rules! env_parsed {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                self.parse_env::<$ty, V>(visitor, |v, x| v.$visit(x))
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Strict<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    env_parsed! {
        deserialize_bool => bool, visit_bool;
        deserialize_i8 => i64, visit_i64;
        deserialize_i16 => i64, visit_i64;
        deserialize_i32 => i64, visit_i64;
        deserialize_i64 => i64, visit_i64;
        deserialize_u8 => u64, visit_u64;
        deserialize_u16 => u64, visit_u64;
        deserialize_u32 => u64, visit_u64;
        deserialize_u64 => u64, visit_u64;
        deserialize_f32 => f64, visit_f64;
        deserialize_f64 => f64, visit_f64;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        match self.value.kind {
            ValueKind::Nil => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(&path))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        visitor.visit_newtype_struct(self).map_err(|e| e.at(&path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if let ValueKind::Table(t) = &mut self.value.kind {
            // Unknown keys are reported and taken out here, where the known
            // field names are at hand for a suggestion.
            let unknown: Vec<String> = t.keys().filter(|k| !fields.contains(&k.as_str())).cloned().collect();
            for key in unknown {
                t.shift_remove(&key);
                let reason = unknown_key_reason(&key, fields);
                self.unknown.borrow_mut().push(Unknown { path: self.path.key(&key), reason });
            }
        }
        self.any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Only unit variants written as strings: `recall = "min"`. Anything
        // else goes to the visitor as it is, which reports the wrong type.
        let ValueKind::String(s) = &self.value.kind else { return self.any(visitor) };
        let variant: String = s.clone();
        visitor.visit_enum(variant.into_deserializer()).map_err(|e: DeError| e.at(&self.path))
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

struct SeqAccess<'u> {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    path: KeyPath,
    unknown: &'u RefCell<Vec<Unknown>>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((i, value)) => {
                let path = self.path.index(i);
                seed.deserialize(Strict { value, path: path.clone(), unknown: self.unknown })
                    .map(Some)
                    .map_err(|e| e.at(&path))
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'u> {
    entries: <::config::Map<String, Value> as IntoIterator>::IntoIter,
    pending: Option<(String, Value)>,
    path: KeyPath,
    unknown: &'u RefCell<Vec<Unknown>>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                let k = seed
                    .deserialize(key.clone().into_deserializer())
                    .map_err(|e: DeError| e.at(&self.path.key(&key)))?;
                self.pending = Some((key, value));
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        let path = self.path.key(&key);
        seed.deserialize(Strict { value, path: path.clone(), unknown: self.unknown }).map_err(|e| e.at(&path))
    }
}

/// "unknown key", with the known key it most likely stands for.
fn unknown_key_reason(key: &str, fields: &[&str]) -> String {
    if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(key)) {
        return format!("unknown key (keys are case-sensitive: did you mean {f}?)");
    }
    let closest = fields.iter().map(|f| (edit_distance(key, f), *f)).min();
    match closest {
        Some((d, f)) if d <= 2 || (d <= 4 && d * 3 <= key.len()) => format!("unknown key (did you mean {f}?)"),
        _ => format!("unknown key (expected one of: {})", fields.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = diag + usize::from(ca != *cb);
            diag = row[j + 1];
            row[j + 1] = subst.min(row[j] + 1).min(diag + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::config::{Config, File, FileFormat};
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Phase {
        number: Option<u8>,
        yellow_s: Option<f64>,
        #[serde(default)]
        calls: Vec<u8>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Doc {
        #[serde(default)]
        phase: Vec<Phase>,
        flag: Option<bool>,
    }

    fn tree(toml: &str) -> Value {
        Config::builder().add_source(File::from_str(toml, FileFormat::Toml)).build().expect("parses").cache
    }

    #[test]
    fn collects_every_type_error_and_unknown_key() {
        let d: Deserialized<Doc> = deserialize_all(tree(
            r#"
            flag = "yes"
            [[phase]]
            number = 2
            yellow_s = "4.0"
            calls = [1, "x"]
            [[phase]]
            number = 2.0
            Yellow_S = 4
            yelow_s = 4
            "#,
        ));
        let got: Vec<(String, String)> = d.problems.iter().map(|p| (p.key.clone(), p.reason.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("flag".into(), "expected true or false, found \"yes\"".into()),
                ("phase 1 (number 2).yellow_s".into(), "expected a number, found \"4.0\"".into()),
                ("phase 1 (number 2).calls[2]".into(), "expected a whole number 0..=255, found \"x\"".into()),
                ("phase 2.number".into(), "expected a whole number 0..=255, found 2".into()),
                ("phase 2.Yellow_S".into(), "unknown key (keys are case-sensitive: did you mean yellow_s?)".into()),
                ("phase 2.yelow_s".into(), "unknown key (did you mean yellow_s?)".into()),
            ]
        );
        assert_eq!(d.value.phase.len(), 2);
        assert_eq!(d.value.phase[0].number, Some(2));
        assert_eq!(d.value.phase[0].yellow_s, None);
        assert!(d.invalid.contains(&KeyPath::root().key("phase").index(0).key("yellow_s")));
        assert!(d.invalid.contains(&KeyPath::root().key("phase").index(0).key("calls")));
    }

    #[test]
    fn integers_stand_for_floats_but_not_the_reverse() {
        let d: Deserialized<Doc> = deserialize_all(tree("[[phase]]\nnumber = 3\nyellow_s = 4\n"));
        assert!(d.problems.is_empty());
        assert_eq!(d.value.phase[0].yellow_s, Some(4.0));
    }

    #[test]
    fn out_of_range_integers_are_reported() {
        let d: Deserialized<Doc> = deserialize_all(tree("[[phase]]\nnumber = 300\n"));
        assert_eq!(d.problems[0].reason, "300 is out of range, expected a whole number 0..=255");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("yelow_s", "yellow_s"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
