//! `[[corridor]]` in `greenwave.toml`: arterials whose adaptive
//! intersections share one cycle, with offsets that make a green wave.
//!
//! ```toml
//! [[corridor]]
//! name = "Broadway"                                 # optional, for logs
//! members = ["broadway-and-4th", "broadway-and-5th", "broadway-and-6th"]
//! travel_s = [32.0, 27.5]                           # 4th → 5th, 5th → 6th
//! ```
//!
//! - `members`: intersection ids (`[intersection] id` of the controller
//!   files), at least two, each once, **in the order phase 2 travels**:
//!   phase 2 is the through movement from the first member towards the
//!   last, phase 6 the one back (the NEMA convention of 2 and 6 as the two
//!   main-street throughs).
//! - `travel_s`: travel time in seconds between consecutive members, one
//!   fewer than `members`, each positive (the same both ways).
//! - `remote`: the members another daemon runs (optional; needs `[nats]`).
//!   Schedule-style members exchange projected outflows with them over the
//!   broker (`src/daemon/neighbours.rs`); every other member must be one of
//!   this daemon's intersections.
//!
//! An intersection belongs to at most one corridor. Members running an
//! adaptive plan in `style = "cycle"` share a cycle and offsets; members in
//! `style = "schedule"` pass on their projected through outflows; see
//! `src/engine/corridor.rs` for both.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::ConfigError;
use super::key::KeyPath;
use crate::core::Span;

/// Longest travel time accepted between two neighbours: beyond this no
/// platoon survives and the members are not a corridor.
pub const MAX_TRAVEL_S: f64 = 600.0;

/// A validated `[[corridor]]`: intersection ids in order and the travel
/// times between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorridorConfig {
    pub name: Option<String>,
    pub members: Vec<String>,
    /// `travel[k]`: from `members[k]` to `members[k + 1]`.
    pub travel: Vec<Span>,
    /// Members another daemon runs.
    pub remote: Vec<String>,
    /// Where it was written, for errors found later (unknown ids).
    pub(crate) key: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawCorridor {
    name: Option<String>,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    travel_s: Vec<f64>,
    #[serde(default)]
    remote: Vec<String>,
}

/// Validates `[[corridor]]` on its own (the intersection ids are checked
/// against the controllers by [`resolve`]); `error` receives each problem.
/// `render` names a key the way the file shows it; `broker` says whether
/// `[nats]` is on (remote members need it).
pub(super) fn validate(
    raw: Vec<RawCorridor>,
    broker: bool,
    mut error: impl FnMut(KeyPath, String),
    render: impl Fn(&KeyPath) -> String,
) -> Vec<CorridorConfig> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in raw.into_iter().enumerate() {
        let at = KeyPath::root().key("corridor").index(i);
        let mut ok = true;
        if c.members.len() < 2 {
            error(at.key("members"), format!("{} intersections: a corridor needs at least 2", c.members.len()));
            ok = false;
        }
        for (k, id) in c.members.iter().enumerate() {
            match seen.insert(id.clone(), i) {
                Some(first) if first == i => {
                    error(at.key("members").index(k), format!("\"{id}\" is listed twice"));
                    ok = false;
                }
                Some(first) => {
                    error(
                        at.key("members").index(k),
                        format!("\"{id}\" is also in corridor {}: an intersection runs one cycle", first + 1),
                    );
                    ok = false;
                }
                None => {}
            }
        }
        if c.members.len() >= 2 && c.travel_s.len() + 1 != c.members.len() {
            error(
                at.key("travel_s"),
                format!(
                    "{} travel times for {} members: one per pair of neighbours ({})",
                    c.travel_s.len(),
                    c.members.len(),
                    c.members.len() - 1
                ),
            );
            ok = false;
        }
        let mut travel = Vec::with_capacity(c.travel_s.len());
        for (k, &s) in c.travel_s.iter().enumerate() {
            match Span::try_from_secs_f64(s).filter(|_| s > 0.0 && s <= MAX_TRAVEL_S) {
                Some(span) if !span.is_zero() => travel.push(span),
                _ => {
                    error(
                        at.key("travel_s").index(k),
                        format!("{s} s: a travel time must be in (0, {MAX_TRAVEL_S}] s"),
                    );
                    ok = false;
                }
            }
        }
        if !c.remote.is_empty() && !broker {
            error(
                at.key("remote"),
                "members another daemon runs are reached through the broker: configure [nats]".into(),
            );
            ok = false;
        }
        for (k, id) in c.remote.iter().enumerate() {
            if !c.members.contains(id) {
                error(at.key("remote").index(k), format!("\"{id}\" is not one of this corridor's members"));
                ok = false;
            }
        }
        if ok {
            out.push(CorridorConfig { name: c.name, members: c.members, travel, remote: c.remote, key: render(&at) });
        }
    }
    out
}

/// A corridor with its members as engine indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedCorridor {
    pub members: Vec<Member>,
    pub travel: Vec<Span>,
}

/// A corridor member as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// One of this daemon's intersections: its engine index.
    Local(usize),
    /// Run by another daemon: its intersection id.
    Remote(String),
}

/// Members as indexes into `ids` (the loaded intersections, in engine
/// order), or an error naming `file`, the key and each unknown id.
///
/// # Errors
/// A member that is not one of `ids`.
pub fn resolve(
    corridors: &[CorridorConfig],
    ids: &[String],
    file: &Path,
) -> Result<Vec<ResolvedCorridor>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(corridors.len());
    for c in corridors {
        let mut members = Vec::with_capacity(c.members.len());
        for (k, id) in c.members.iter().enumerate() {
            let remote = c.remote.contains(id);
            match (ids.iter().position(|x| x == id), remote) {
                (Some(i), false) => members.push(Member::Local(i)),
                (None, true) => members.push(Member::Remote(id.clone())),
                (None, false) => errors.push(ConfigError::new(
                    file,
                    format!("{}.members[{}]", c.key, k + 1),
                    format!(
                        "\"{id}\" is not a configured intersection (known: {}); one another daemon runs goes in `remote`",
                        ids.join(", ")
                    ),
                )),
                (Some(_), true) => errors.push(ConfigError::new(
                    file,
                    format!("{}.remote", c.key),
                    format!("\"{id}\" is one of this daemon's intersections, not a remote one"),
                )),
            }
        }
        out.push(ResolvedCorridor { members, travel: c.travel.clone() });
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: Vec<RawCorridor>) -> (Vec<CorridorConfig>, Vec<String>) {
        let mut errors = Vec::new();
        let out = validate(raw, true, |k, r| errors.push(format!("{}: {r}", k.env_var("X"))), |k| k.env_var("X"));
        (out, errors)
    }

    fn corridor(members: &[&str], travel_s: &[f64]) -> RawCorridor {
        RawCorridor {
            name: None,
            members: members.iter().map(|s| (*s).to_string()).collect(),
            travel_s: travel_s.to_vec(),
            remote: Vec::new(),
        }
    }

    #[test]
    fn a_good_corridor_validates_and_resolves() {
        let (out, errors) = check(vec![corridor(&["a", "b", "c"], &[30.0, 25.5])]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out[0].travel, vec![Span::from_secs(30), Span::from_millis(25_500)]);
        let ids: Vec<String> = ["c", "b", "a"].iter().map(|s| (*s).to_string()).collect();
        let resolved = resolve(&out, &ids, Path::new("greenwave.toml")).unwrap();
        assert_eq!(resolved[0].members, vec![Member::Local(2), Member::Local(1), Member::Local(0)]);
    }

    #[test]
    fn too_few_members_wrong_travel_count_and_bad_travel_times_are_errors() {
        let (out, errors) = check(vec![
            corridor(&["a"], &[]),
            corridor(&["b", "c", "d"], &[10.0]),
            corridor(&["e", "f", "g"], &[0.0, -3.0]),
            corridor(&["h", "h"], &[f64::NAN]),
            corridor(&["b", "i"], &[12.0]),
        ]);
        assert!(out.is_empty(), "{out:?}");
        let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
        assert!(has("X_CORRIDOR__0__MEMBERS: 1 intersections: a corridor needs at least 2"), "{errors:?}");
        assert!(has("X_CORRIDOR__1__TRAVEL_S: 1 travel times for 3 members"), "{errors:?}");
        assert!(has("X_CORRIDOR__2__TRAVEL_S__0: 0 s"), "{errors:?}");
        assert!(has("X_CORRIDOR__2__TRAVEL_S__1: -3 s"), "{errors:?}");
        assert!(has("X_CORRIDOR__3__TRAVEL_S__0: NaN s"), "{errors:?}");
        assert!(has("\"h\" is listed twice"), "{errors:?}");
        assert!(has("\"b\" is also in corridor 2"), "{errors:?}");
        assert_eq!(errors.len(), 7, "{errors:?}");
    }

    #[test]
    fn unknown_members_are_named_with_file_and_key() {
        let (out, _) = check(vec![corridor(&["a", "zz"], &[10.0])]);
        let ids = vec!["a".to_string(), "b".to_string()];
        let errors = resolve(&out, &ids, Path::new("greenwave.toml")).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "greenwave.toml: X_CORRIDOR__0.members[2]: \"zz\" is not a configured intersection (known: a, b); \
             one another daemon runs goes in `remote`"
        );
    }

    #[test]
    fn remote_members_are_named_and_must_not_be_local() {
        let mut a = corridor(&["a", "x", "y"], &[10.0, 12.0]);
        a.remote = vec!["x".into(), "a".into()];
        let mut b = corridor(&["b", "c"], &[10.0]);
        b.remote = vec!["q".into()];
        let (out, errors) = check(vec![a, b]);
        assert_eq!(errors, vec!["X_CORRIDOR__1__REMOTE__0: \"q\" is not one of this corridor's members"]);
        let ids = vec!["a".to_string(), "y".to_string()];
        let errors = resolve(&out, &ids, Path::new("greenwave.toml")).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("\"a\" is one of this daemon's intersections"), "{errors:?}");
        let mut ok = corridor(&["a", "x", "y"], &[10.0, 12.0]);
        ok.remote = vec!["x".into()];
        let mut without_broker = Vec::new();
        let kept = validate(
            vec![ok],
            false,
            |k, r| without_broker.push(format!("{}: {r}", k.env_var("X"))),
            |k| k.env_var("X"),
        );
        assert!(kept.is_empty());
        assert_eq!(
            without_broker,
            vec!["X_CORRIDOR__0__REMOTE: members another daemon runs are reached through the broker: configure [nats]"]
        );
        let mut ok = corridor(&["a", "x", "y"], &[10.0, 12.0]);
        ok.remote = vec!["x".into()];
        let (out, _) = check(vec![ok]);
        let resolved = resolve(&out, &ids, Path::new("greenwave.toml")).unwrap();
        assert_eq!(resolved[0].members, vec![Member::Local(0), Member::Remote("x".into()), Member::Local(1)]);
    }
}
