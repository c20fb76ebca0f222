//! Raw controller file → validated [`IntersectionConfig`].
//!
//! Every check runs, whatever failed before it, and each problem is reported
//! with its file and key (vector's config compiler does the same): an
//! engineer fixes a timing file in one pass, not one error per restart.
//! Checks that need a value another check rejected are skipped rather than
//! reported twice.
//!
//! What is checked, section by section, is listed in `controllers/README.md`;
//! the references are ITE (yellow change and red clearance), MUTCD 2009
//! chapters 4D/4E (3-6 s yellow, pedestrian intervals) and NEMA TS2 /
//! NTCIP 1202 ring-barrier rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use ::config::Value;

use crate::core::adaptive::Optimizer;
use crate::core::ids::MAX_PHASES;
use crate::core::spec::{
    AdaptiveSpec, ControllerSpec, DetectorKind, DetectorSpec, FlashIndication, OverlapSpec, PhaseSpec, PhaseTiming,
    PlanMode, PlanSpec, PreemptSpec, PrioritySpec, Recall, RingSpec, Schedule, StartupSpec,
};
use crate::core::{DetectorChannel, OverlapId, PhaseId, PhaseSet, Span};

use super::clearance::ApproachSpeed;
use super::de::Deserialized;
use super::error::{ConfigError, Warning};
use super::key::KeyPath;
use super::raw::{RawController, RawFlash, RawIntersection, RawLocation};
use super::{CabinetConfig, CameraZone, IntersectionConfig, Location, TrafficConfig};

mod cabinet;
mod camera;
mod detector;

pub use cabinet::{
    DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_BAUD, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LINK_TIMEOUT,
    DEFAULT_READ_AHEAD, DEFAULT_REQUEST_TIMEOUT,
};
mod adaptive;
mod phase;
mod plan;
mod preempt;
mod schedule;
mod sequence;
mod simulation;
#[cfg(test)]
mod tests;

/// `[simulation] seed` when not given: a fixed seed keeps runs repeatable.
pub const DEFAULT_SIM_SEED: u64 = 1;
/// `[simulation] saturation_headway_s` when not given, 2.0 s (HCM base
/// saturation flow of 1,800-1,900 veh/h per lane is about 2 s per vehicle).
pub const DEFAULT_SATURATION_HEADWAY: Span = Span::from_millis(2000);
/// `[cabinet] unit_id` when not given.
pub const DEFAULT_MODBUS_UNIT_ID: u8 = 1;
/// How far ring totals may be off the cycle, or from each other at a
/// barrier, before it is an error: float sums of 0.1 s values are not exact.
const SPLIT_TOLERANCE: Span = Span::from_millis(50);
/// MUTCD 4D.26: yellow change intervals are 3 to 6 s.
const MUTCD_YELLOW_MIN: Span = Span::from_millis(3000);
const MUTCD_YELLOW_MAX: Span = Span::from_millis(6000);
/// MUTCD 4D.26: a red clearance interval should not exceed 6 s.
const MUTCD_RED_CLEAR_MAX: Span = Span::from_millis(6000);
/// MUTCD 4E.06: a walk interval should be at least 7 s (4 s at low volumes).
const MUTCD_WALK: Span = Span::from_millis(7000);
/// Beyond ±10% grade the ITE formula is no longer trusted (no friction term).
const ITE_GRADE_LIMIT_PERCENT: f64 = 10.0;

/// The result of checking one controller file: the config when there are
/// no errors, and every warning either way (`check` shows them for broken
/// files too).
#[derive(Debug)]
pub(crate) struct Checked {
    pub config: Option<IntersectionConfig>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Warning>,
}

/// Runs every check on a deserialized controller file. `doc.problems`
/// (type errors, unknown keys) count as errors of the file.
pub(crate) fn validate(doc: &Deserialized<RawController>, file: &Path, text: &str) -> Checked {
    let errors: Vec<ConfigError> =
        doc.problems.iter().map(|p| ConfigError::new(file, p.key.clone(), p.reason.clone())).collect();
    if doc.gave_up {
        return Checked { config: None, errors, warnings: Vec::new() };
    }
    let mut v = Validator {
        file,
        tree: &doc.tree,
        invalid: &doc.invalid,
        errors,
        warnings: Vec::new(),
        phases: BTreeMap::new(),
        rings: None,
        groups: None,
        declared_conflicts: Vec::new(),
        detectors: BTreeMap::new(),
        overlaps: BTreeMap::new(),
        declared_plans: BTreeMap::new(),
        plans: Vec::new(),
    };
    let raw = &doc.value;
    let intersection = v.intersection(raw.intersection.as_ref());
    let cabinet = v.cabinet(raw.cabinet.as_ref());
    v.phases(&raw.phase);
    v.sequence(raw.sequence.as_ref());
    v.flash_indications();
    let startup = v.startup(raw.startup.as_ref());
    v.detectors(&raw.detector);
    let camera_zones = v.camera_zones(&raw.camera_zone);
    v.overlaps(&raw.overlap);
    v.plans(&raw.plan);
    let schedule = v.schedule(raw.schedule.as_ref());
    let traffic = v.simulation(raw.simulation.as_ref(), cabinet.as_ref());
    let (preempts, priority) = (v.preempts(&raw.preempt), v.transit_priority(raw.transit_priority.as_ref()));
    let adaptive = v.adaptive(raw.adaptive.as_ref());
    v.service_warnings();

    let mut config = match (intersection, cabinet, startup, schedule) {
        (Some((id, name, time_zone, location)), Some(cabinet), Some(startup), Some((default_plan, schedule)))
            if v.errors.is_empty() =>
        {
            v.build(Sections {
                text: Arc::from(text),
                id,
                name,
                time_zone,
                location,
                cabinet,
                startup,
                default_plan,
                schedule,
                traffic,
                camera_zones,
                preempts,
                priority,
                adaptive,
            })
        }
        _ => None,
    };
    // Needs the whole spec: the minimum splits come from every phase's
    // timing and the ring-barrier structure.
    if let Some(cfg) = config.as_ref().filter(|_| raw.adaptive.is_some()) {
        let (floor, max) = Optimizer::cycle_limits(&cfg.spec, &cfg.spec.adaptive);
        if floor > max {
            v.error(
                &root().key("adaptive").key("max_cycle_s"),
                format!(
                    "{} is below {}, the shortest cycle that holds every phase's minimum split (min green or pedestrian service, plus clearances): the optimizer could never fit them",
                    secs(max),
                    secs(floor)
                ),
            );
            config = None;
        }
    }
    if config.is_none() && v.errors.is_empty() {
        // Every path that leaves a piece unbuilt reports why; this guards
        // against a future check forgetting to.
        v.error(&KeyPath::root(), "configuration incomplete (a greenwave validator bug: please report it)");
    }
    Checked { config, errors: v.errors, warnings: v.warnings }
}

/// The sections that are not kept in the [`Validator`] while it runs.
struct Sections {
    text: Arc<str>,
    id: String,
    name: String,
    time_zone: Option<chrono_tz::Tz>,
    location: Option<Location>,
    cabinet: CabinetConfig,
    startup: StartupSpec,
    default_plan: u8,
    schedule: Schedule,
    traffic: TrafficConfig,
    camera_zones: Vec<CameraZone>,
    preempts: Vec<PreemptSpec>,
    priority: PrioritySpec,
    adaptive: AdaptiveSpec,
}

/// A phase as far as it validated.
#[derive(Debug)]
struct PhaseDraft {
    at: KeyPath,
    name: String,
    flash: FlashIndication,
    /// `None` when a timing key is missing or invalid (already reported).
    timing: Option<PhaseTiming>,
    /// Also converts an advance loop's `distance_m` to its travel time.
    speed: Option<ApproachSpeed>,
    /// `conditional_service` as written: where the ring allows it is
    /// checked even when the timing is not valid.
    conditional_service: bool,
    ring: Option<usize>,
    group: Option<usize>,
}

/// How two phases relate in the ring-barrier structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relation {
    /// Same ring: served one after the other.
    SameRing(usize),
    /// Different barrier groups: never together.
    CrossBarrier(usize, usize),
    /// Same barrier group, different rings: may time together.
    Concurrent(usize, usize),
}

struct Validator<'a> {
    file: &'a Path,
    tree: &'a Value,
    invalid: &'a BTreeSet<KeyPath>,
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
    phases: BTreeMap<PhaseId, PhaseDraft>,
    /// `sequence.rings` as validated; `None` if missing or invalid.
    rings: Option<Vec<RingSpec>>,
    groups: Option<Vec<PhaseSet>>,
    /// `sequence.conflicts` pairs that passed validation.
    declared_conflicts: Vec<(PhaseId, PhaseId)>,
    detectors: BTreeMap<DetectorChannel, (KeyPath, DetectorSpec)>,
    overlaps: BTreeMap<OverlapId, (KeyPath, OverlapSpec)>,
    /// Every plan number a `[[plan]]` declares, valid or not, and where: the
    /// schedule may refer to a plan that failed validation (reported there).
    declared_plans: BTreeMap<u8, KeyPath>,
    plans: Vec<PlanSpec>,
}

fn root() -> KeyPath {
    KeyPath::root()
}

fn flash_indication(raw: RawFlash) -> FlashIndication {
    match raw {
        RawFlash::Red => FlashIndication::Red,
        RawFlash::Yellow => FlashIndication::Yellow,
    }
}

/// Seconds as engineers write them: `4.0 s`, `3.25 s`.
fn secs(span: Span) -> String {
    if span.as_millis().is_multiple_of(100) {
        format!("{:.1} s", span.as_secs_f64())
    } else {
        format!("{} s", span.as_secs_f64())
    }
}

fn list(phases: impl IntoIterator<Item = PhaseId>) -> String {
    phases.into_iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
}

impl Validator<'_> {
    fn error(&mut self, at: &KeyPath, reason: impl Into<String>) {
        self.errors.push(ConfigError::new(self.file, at.render(self.tree), reason));
    }

    fn warn(&mut self, at: &KeyPath, reason: impl Into<String>) {
        self.warnings.push(Warning::new(self.file, at.render(self.tree), reason));
    }

    /// A required key: reports it missing unless it was present but invalid.
    fn required<T>(&mut self, value: Option<T>, at: &KeyPath) -> Option<T> {
        if value.is_none() && !self.invalid.contains(at) {
            self.error(at, "missing (required)");
        }
        value
    }

    fn required_table<T>(&mut self, value: Option<T>, at: &KeyPath, table: &str) -> Option<T> {
        if value.is_none() && !self.invalid.contains(at) {
            self.error(at, format!("missing table [{table}] (required)"));
        }
        value
    }

    /// Seconds → [`Span`]; negative or non-finite is an error.
    fn seconds(&mut self, s: f64, at: &KeyPath) -> Option<Span> {
        let span = Span::try_from_secs_f64(s);
        if span.is_none() {
            self.error(at, format!("{s} is not a duration in seconds (0 or more)"));
        }
        span
    }

    fn required_seconds(&mut self, s: Option<f64>, at: &KeyPath) -> Option<Span> {
        self.required(s, at).and_then(|s| self.seconds(s, at))
    }

    /// A reference to a phase: a phase number defined by a `[[phase]]`.
    fn phase_ref(&mut self, n: u8, at: &KeyPath) -> Option<PhaseId> {
        let Some(id) = PhaseId::new(n) else {
            self.error(at, format!("{n} is not a phase number (1..={MAX_PHASES})"));
            return None;
        };
        if !self.phases.contains_key(&id) {
            self.error(at, format!("phase {id} is not defined by any [[phase]]"));
            return None;
        }
        Some(id)
    }

    fn phase_set(&mut self, numbers: &[u8], at: &KeyPath) -> PhaseSet {
        numbers.iter().filter_map(|&n| self.phase_ref(n, at)).collect()
    }

    fn timing(&self, p: PhaseId) -> Option<&PhaseTiming> {
        self.phases.get(&p).and_then(|d| d.timing.as_ref())
    }

    fn relation(&self, a: PhaseId, b: PhaseId) -> Option<Relation> {
        let (a, b) = (self.phases.get(&a)?, self.phases.get(&b)?);
        let (ra, ga, rb, gb) = (a.ring?, a.group?, b.ring?, b.group?);
        Some(if ra == rb {
            Relation::SameRing(ra)
        } else if ga != gb {
            Relation::CrossBarrier(ga, gb)
        } else {
            Relation::Concurrent(ra, rb)
        })
    }

    // ---- [intersection] (and [cabinet] in `cabinet`) --------------------

    fn intersection(
        &mut self,
        raw: Option<&RawIntersection>,
    ) -> Option<(String, String, Option<chrono_tz::Tz>, Option<Location>)> {
        let at = root().key("intersection");
        let raw = self.required_table(raw, &at, "intersection")?;
        let id = self.required(raw.id.clone(), &at.key("id"))?;
        let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.error(
                &at.key("id"),
                format!("\"{id}\" must be letters, digits, '-', '_' or '.': it names log files and is the signal id in the event log"),
            );
            return None;
        }
        let name = raw.name.clone().unwrap_or_else(|| id.clone());
        let time_zone = match &raw.time_zone {
            None => None,
            Some(zone) => Some(
                super::daemon::parse_time_zone(zone).map_err(|reason| self.error(&at.key("time_zone"), reason)).ok()?,
            ),
        };
        let location = match &raw.location {
            None => None,
            Some(l) => Some(self.location(l, &at.key("location"))?),
        };
        Some((id, name, time_zone, location))
    }

    /// `location = { lat, lon }`: both required, in degrees, on the earth.
    fn location(&mut self, raw: &RawLocation, at: &KeyPath) -> Option<Location> {
        let mut degrees = |value: Option<f64>, key: &str, limit: f64, what: &str| {
            let at = at.key(key);
            let value = self.required(value, &at)?;
            if value.is_finite() && (-limit..=limit).contains(&value) {
                Some(value)
            } else {
                self.error(&at, format!("{value} is not a {what} in degrees (-{limit} to {limit})"));
                None
            }
        };
        let lat = degrees(raw.lat, "lat", 90.0, "latitude");
        let lon = degrees(raw.lon, "lon", 180.0, "longitude");
        Some(Location { lat: lat?, lon: lon? })
    }

    // ---- warnings across sections ---------------------------------------

    fn service_warnings(&mut self) {
        let mut vehicle_calls = PhaseSet::EMPTY;
        let mut ped_calls = PhaseSet::EMPTY;
        for (_, d) in self.detectors.values() {
            match d.kind {
                DetectorKind::Vehicle => vehicle_calls = vehicle_calls.union(d.calls),
                DetectorKind::Pedestrian => ped_calls = ped_calls.union(d.calls),
            }
        }
        let phases: Vec<(PhaseId, KeyPath, PhaseTiming)> =
            self.phases.iter().filter_map(|(id, d)| Some((*id, d.at.clone(), d.timing?))).collect();
        for (id, at, t) in phases {
            if t.recall == Recall::None && !vehicle_calls.union(ped_calls).contains(id) {
                self.warn(
                    &at,
                    format!("no detector calls phase {id} and its recall is none: free plans never serve it"),
                );
            }
            if t.has_ped() && t.recall != Recall::Ped && !ped_calls.contains(id) {
                self.warn(
                    &at,
                    format!(
                        "no push button calls phase {id} and its recall is not ped: its pedestrians are never served"
                    ),
                );
            }
        }
        // A car waiting through a long red sits on a stop-bar loop for most
        // of a cycle; a max-presence limit below that flags healthy loops.
        let longest =
            self.plans.iter().filter(|p| p.mode != PlanMode::Free).max_by_key(|p| p.cycle).map(|p| (p.number, p.cycle));
        if let Some((plan, cycle)) = longest {
            let short: Vec<(KeyPath, Span)> = self
                .detectors
                .values()
                .filter(|(_, d)| d.kind == DetectorKind::Vehicle)
                .filter_map(|(at, d)| Some((at.clone(), d.diagnostics.max_presence.filter(|m| *m < cycle)?)))
                .collect();
            for (at, limit) in short {
                self.warn(
                    &at.key("max_presence_s"),
                    format!("{} is shorter than plan {plan}'s {} cycle: a car waiting through red would be flagged as a stuck detector", secs(limit), secs(cycle)),
                );
            }
        }
    }

    // ---- assembly --------------------------------------------------------

    fn build(&mut self, sections: Sections) -> Option<IntersectionConfig> {
        let Sections {
            text,
            id,
            name,
            time_zone,
            location,
            cabinet,
            startup,
            default_plan,
            schedule,
            traffic,
            camera_zones,
            preempts,
            priority,
            adaptive,
        } = sections;
        let mut phases = Vec::new();
        let mut phase_slot = [None; MAX_PHASES];
        for (id, d) in &self.phases {
            let (Some(ring), Some(group), Some(timing)) = (d.ring, d.group, d.timing) else { return None };
            phase_slot[id.index()] = u8::try_from(phases.len()).ok();
            phases.push(PhaseSpec { id: *id, name: d.name.clone(), ring, group, timing });
        }
        // Validation rejected every declared pair the structure would time
        // together, so this union adds nothing today; it keeps the spec's
        // contract (structure plus configuration) if that rule is relaxed.
        let mut conflicts = ControllerSpec::structural_conflicts(&phases);
        for &(a, b) in &self.declared_conflicts {
            conflicts[a.index()].insert(b);
            conflicts[b.index()].insert(a);
        }
        let spec = ControllerSpec {
            id,
            version: 1,
            phases,
            phase_slot,
            rings: self.rings.take()?,
            barrier_groups: self.groups.take()?,
            conflicts,
            detectors: std::mem::take(&mut self.detectors).into_values().map(|(_, d)| d).collect(),
            overlaps: std::mem::take(&mut self.overlaps).into_values().map(|(_, o)| o).collect(),
            plans: {
                let mut plans = std::mem::take(&mut self.plans);
                plans.sort_by_key(|p| p.number);
                plans
            },
            default_plan,
            schedule,
            startup,
            preempts,
            priority,
            adaptive,
        };
        Some(IntersectionConfig {
            spec,
            name,
            time_zone,
            location,
            cabinet,
            traffic,
            camera_zones,
            source: self.file.to_path_buf(),
            text,
        })
    }
}
