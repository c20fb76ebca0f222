//! prost messages ↔ domain types. prost types stop here: `core` and
//! `config` never see them.

use tonic::Status;
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::config::{ConfigError, IntersectionConfig};
use crate::core::detector::DetectorFault;
use crate::core::spec::PlanMode;
use crate::core::{
    Coordination, FlashReason, Indication, Interval, OperatingMode, PedIndication, PhaseId, PreemptStage, Snapshot,
    UnitState,
};
use crate::engine::latency::Percentiles;

use super::docs::Current;
use super::measures::{IntersectionMeasures, LaneVolume, PreemptCounts};
use super::pb;
use crate::telemetry::journal::{Record, RecordKind};

// === errors ===

/// Caller-supplied text echoed in a status message or an audit record is
/// cut to this many characters: a caller cannot grow the daemon's history
/// or logs by sending long strings.
pub const MAX_ECHO_CHARS: usize = 64;

/// At most [`MAX_ECHO_CHARS`] characters of caller-supplied text.
pub fn echo(s: &str) -> &str {
    s.char_indices().nth(MAX_ECHO_CHARS).map_or(s, |(end, _)| &s[..end])
}

/// INVALID_ARGUMENT naming `field`, with a google.rpc.BadRequest detail.
pub fn invalid(field: &str, reason: impl Into<String>) -> Status {
    let reason = reason.into();
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("{field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

/// Every problem of a request, collected before answering: INVALID_ARGUMENT
/// lists them all, in the message (`field: reason; ...`) and as BadRequest
/// field violations, so a caller fixes a request in one round.
#[derive(Debug, Default)]
pub struct Violations(Vec<(String, String)>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push((field.into(), reason.into()));
    }

    /// `Ok` if nothing was added; else INVALID_ARGUMENT with everything, the
    /// message opening with `what`.
    pub fn check(self, what: &str) -> Result<(), Status> {
        if self.0.is_empty() { Ok(()) } else { Err(self.status(what)) }
    }

    /// INVALID_ARGUMENT with everything added, the message opening with `what`.
    pub fn status(self, what: &str) -> Status {
        let list: Vec<String> =
            self.0.iter().map(|(f, r)| if f.is_empty() { r.clone() } else { format!("{f}: {r}") }).collect();
        let violations: Vec<FieldViolation> = self.0.into_iter().map(|(f, r)| FieldViolation::new(f, r)).collect();
        Status::with_error_details(
            tonic::Code::InvalidArgument,
            format!(
                "{what} rejected ({} error{}): {}",
                list.len(),
                if list.len() == 1 { "" } else { "s" },
                list.join("; ")
            ),
            ErrorDetails::with_bad_request(violations),
        )
    }
}

/// INVALID_ARGUMENT listing every configuration error; each field is the
/// request's own path where `fields` knows one (see [`PlanFields`]), else
/// the key as `greenwave check` names it.
pub fn rejected(what: &str, errors: &[ConfigError], fields: Option<&PlanFields<'_>>) -> Status {
    let mut v = Violations::default();
    for e in errors {
        v.add(fields.map_or_else(|| e.key.clone(), |f| f.field(&e.key)), e.reason.clone());
    }
    v.status(what)
}

/// Where a plan's keys came from in a request, so the validator's verdict
/// names the request's fields: `plan 2 (number 2).splits_s.4` is
/// `plan.splits_s[1].split_s` for an ApplyTimingPlan that gave phase 4's
/// split second, `splits_s[1].split_s` for a SetCoordination.
#[derive(Clone, Copy, Debug)]
pub struct PlanFields<'a> {
    /// `"plan."` (ApplyTimingPlan) or `""` (SetCoordination).
    pub prefix: &'a str,
    pub number: u8,
    pub splits: &'a [pb::PhaseSplit],
}

impl PlanFields<'_> {
    pub fn field(&self, key: &str) -> String {
        let marker = format!("(number {})", self.number);
        let Some(rest) = key.strip_prefix("plan ").and_then(|k| k.split_once(&marker)).map(|(_, rest)| rest) else {
            return key.to_owned();
        };
        let prefix = self.prefix;
        match rest.strip_prefix('.') {
            None => prefix.trim_end_matches('.').to_owned(),
            Some("max") => format!("{prefix}max2"),
            Some(rest) => match rest.split_once('.') {
                Some(("splits_s", phase)) => match self.splits.iter().position(|s| s.phase.to_string() == phase) {
                    Some(i) => format!("{prefix}splits_s[{i}].split_s"),
                    None => format!("{prefix}splits_s"),
                },
                _ => format!("{prefix}{rest}"),
            },
        }
    }
}

/// A phase number from a request field.
pub fn phase(number: u32, field: &str) -> Result<PhaseId, Status> {
    u8::try_from(number)
        .ok()
        .and_then(PhaseId::new)
        .ok_or_else(|| invalid(field, format!("{number} is not a phase number (1..=16)")))
}

/// The operating mode asked for.
pub fn mode(m: i32) -> Result<OperatingMode, Status> {
    match pb::Mode::try_from(m) {
        Ok(pb::Mode::Scheduled) => Ok(OperatingMode::Scheduled),
        Ok(pb::Mode::Actuated) => Ok(OperatingMode::Actuated),
        Ok(pb::Mode::Coordinated) => Ok(OperatingMode::Coordinated),
        Ok(pb::Mode::Fixed) => Ok(OperatingMode::Fixed),
        Ok(pb::Mode::Flash) => Ok(OperatingMode::Flash),
        Ok(pb::Mode::Adaptive) => Ok(OperatingMode::Adaptive),
        Ok(pb::Mode::Unspecified) => Err(invalid("mode", "must be set (MODE_UNSPECIFIED)")),
        Err(_) => Err(invalid("mode", format!("{m} is not a Mode"))),
    }
}

fn pb_mode(m: OperatingMode) -> pb::Mode {
    match m {
        OperatingMode::Scheduled => pb::Mode::Scheduled,
        OperatingMode::Actuated => pb::Mode::Actuated,
        OperatingMode::Coordinated => pb::Mode::Coordinated,
        OperatingMode::Fixed => pb::Mode::Fixed,
        OperatingMode::Flash => pb::Mode::Flash,
        OperatingMode::Adaptive => pb::Mode::Adaptive,
    }
}

pub(super) fn pb_plan_mode(m: PlanMode) -> pb::PlanMode {
    match m {
        PlanMode::Free => pb::PlanMode::Free,
        PlanMode::Coordinated => pb::PlanMode::Coordinated,
        PlanMode::Fixed => pb::PlanMode::Fixed,
    }
}

fn pb_flash(r: FlashReason) -> pb::FlashReason {
    match r {
        FlashReason::Startup => pb::FlashReason::Startup,
        FlashReason::Operator => pb::FlashReason::Operator,
        FlashReason::MonitorTrip => pb::FlashReason::MonitorTrip,
        FlashReason::ManualSwitch => pb::FlashReason::ManualSwitch,
        FlashReason::CabinetMonitor => pb::FlashReason::CabinetMonitor,
        FlashReason::CabinetLinkLost => pb::FlashReason::CabinetLinkLost,
        FlashReason::Overrun => pb::FlashReason::Overrun,
        FlashReason::ConfigInvalid => pb::FlashReason::ConfigInvalid,
        FlashReason::Shutdown => pb::FlashReason::Shutdown,
        FlashReason::SecondMaster => pb::FlashReason::SecondMaster,
    }
}

fn pb_preempt_stage(s: PreemptStage) -> pb::PreemptionStage {
    match s {
        PreemptStage::Delay => pb::PreemptionStage::Delay,
        PreemptStage::Entry => pb::PreemptionStage::Entry,
        PreemptStage::TrackClearance => pb::PreemptionStage::TrackClearance,
        PreemptStage::Dwell => pb::PreemptionStage::Dwell,
        PreemptStage::Exit => pb::PreemptionStage::Exit,
    }
}

fn pb_coordination(c: Coordination) -> pb::CoordinationState {
    match c {
        Coordination::Free => pb::CoordinationState::Free,
        Coordination::InStep => pb::CoordinationState::InStep,
        Coordination::Transitioning => pb::CoordinationState::Transitioning,
    }
}

fn pb_interval(i: Interval) -> pb::Interval {
    match i {
        Interval::Idle => pb::Interval::Idle,
        Interval::Green => pb::Interval::Green,
        Interval::Yellow => pb::Interval::Yellow,
        Interval::RedClear => pb::Interval::RedClear,
    }
}

fn pb_indication(i: Indication) -> pb::Indication {
    match i {
        Indication::Dark => pb::Indication::Dark,
        Indication::Red => pb::Indication::Red,
        Indication::Yellow => pb::Indication::Yellow,
        Indication::Green => pb::Indication::Green,
        Indication::FlashingRed => pb::Indication::FlashingRed,
        Indication::FlashingYellow => pb::Indication::FlashingYellow,
    }
}

fn pb_ped(i: PedIndication) -> pb::PedIndication {
    match i {
        PedIndication::Dark => pb::PedIndication::Dark,
        PedIndication::DontWalk => pb::PedIndication::DontWalk,
        PedIndication::FlashingDontWalk => pb::PedIndication::FlashingDontWalk,
        PedIndication::Walk => pb::PedIndication::Walk,
    }
}

fn pb_fault(f: Option<DetectorFault>) -> pb::DetectorFault {
    match f {
        None => pb::DetectorFault::None,
        Some(DetectorFault::NoActivity) => pb::DetectorFault::NoActivity,
        Some(DetectorFault::MaxPresence) => pb::DetectorFault::MaxPresence,
        Some(DetectorFault::Erratic) => pb::DetectorFault::Erratic,
        Some(DetectorFault::ImplausibleCount) => pb::DetectorFault::ImplausibleCount,
    }
}

// === watch ===

/// What ListIntersections says about one intersection.
pub fn info(current: &Current) -> pb::IntersectionInfo {
    let cfg: &IntersectionConfig = &current.config;
    let spec = &cfg.spec;
    pb::IntersectionInfo {
        id: spec.id.clone(),
        name: cfg.name.clone(),
        phases: spec
            .phases
            .iter()
            .map(|p| pb::PhaseInfo {
                number: p.id.number().into(),
                name: p.name.clone(),
                ring: p.ring as u32 + 1,
                barrier_group: p.group as u32 + 1,
                has_ped: p.timing.has_ped(),
            })
            .collect(),
        detector_channels: spec.detectors.iter().map(|d| d.channel.number().into()).collect(),
        plans: spec
            .plans
            .iter()
            .map(|p| pb::PlanInfo {
                number: p.number.into(),
                name: p.name.clone(),
                mode: pb_plan_mode(p.mode).into(),
                cycle_s: p.cycle.as_secs_f64(),
                offset_s: p.offset.as_secs_f64(),
            })
            .collect(),
        camera_zones: cfg
            .camera_zones
            .iter()
            .map(|z| pb::CameraZoneInfo { zone_id: z.id.clone(), detector_channel: z.channel.number().into() })
            .collect(),
        config_version: current.version,
    }
}

/// A snapshot as the API shows it. `current` supplies names the snapshot
/// does not carry (overlaps) and the config version.
pub fn state(
    s: &Snapshot,
    current: &Current,
    link: Option<&crate::io::cabinet::CabinetStats>,
) -> pb::IntersectionState {
    let spec = &current.config.spec;
    let (unit_state, flash_reason, unit_since) = match s.unit {
        UnitState::Run => (pb::UnitState::Run, pb::FlashReason::Unspecified, None),
        UnitState::AllRed { since } => (pb::UnitState::AllRed, pb::FlashReason::Unspecified, Some(since)),
        UnitState::Flash { reason, since } => (pb::UnitState::Flash, pb_flash(reason), Some(since)),
    };
    pb::IntersectionState {
        intersection_id: spec.id.clone(),
        at_unix_ms: s.at.as_millis(),
        unit_state: unit_state.into(),
        flash_reason: flash_reason.into(),
        unit_state_elapsed_ms: unit_since.map_or(0, |t| s.at.since(t).as_millis()),
        // A flashing intersection is in flash, whatever the operator's mode
        // (a fault flash leaves it unchanged, an operator flash is applied
        // at the barrier without becoming the mode the unit returns to).
        mode: if unit_state == pb::UnitState::Flash { pb::Mode::Flash } else { pb_mode(s.mode) }.into(),
        plan_number: s.plan.into(),
        plan_mode: pb_plan_mode(s.plan_mode).into(),
        cycle_ms: s.cycle.as_millis(),
        cycle_position_ms: s.cycle_time.map(|c| c.as_millis()),
        rings: s.rings[..usize::from(s.ring_count).min(s.rings.len())]
            .iter()
            .enumerate()
            .map(|(r, ring)| pb::RingState {
                ring: r as u32 + 1,
                phase: ring.phase.map_or(0, |p| p.number().into()),
                interval: pb_interval(ring.interval).into(),
                elapsed_ms: ring.elapsed.as_millis(),
                next_phase: ring.next.map_or(0, |p| p.number().into()),
                max_elapsed_ms: ring.max_elapsed.map(|m| m.as_millis()),
            })
            .collect(),
        phases: s
            .present
            .iter()
            .map(|p| pb::PhaseState {
                number: p.number().into(),
                vehicle: pb_indication(s.output.phase(p)).into(),
                ped: pb_ped(s.output.ped(p)).into(),
                vehicle_call: s.vehicle_calls.contains(p),
                ped_call: s.ped_calls.contains(p),
                held: s.holds.contains(p),
                queue: s.queues[p.index()].map(u32::from),
                ped_countdown_s: Some(s.output.countdown(p)).filter(|c| !c.is_blank()).map(|c| c.secs().into()),
                accessible_walk: s.output.accessible_walk.contains(p),
                locator_tone: s.output.locator_tone().contains(p),
                ped_extended: s.output.ped_extended.contains(p),
                omitted: s.omitted.contains(p),
            })
            .collect(),
        overlaps: spec
            .overlaps
            .iter()
            .map(|o| pb::OverlapState {
                id: o.id.letter().to_string(),
                indication: pb_indication(s.output.overlap(o.id)).into(),
            })
            .collect(),
        detectors: s.detectors[..usize::from(s.detector_count).min(s.detectors.len())]
            .iter()
            .map(|d| pb::DetectorState {
                channel: d.channel.into(),
                presence: d.presence,
                output: d.output,
                fault: pb_fault(d.fault).into(),
                volume: d.volume,
                occupied_ms: d.occupied_ms,
            })
            .collect(),
        events_dropped: s.events_dropped,
        config_version: current.version,
        config_version_in_force: s.config_version,
        cabinet_link: link.map(|l| pb::CabinetLink {
            up: l.link_up.load(std::sync::atomic::Ordering::Relaxed),
            links_lost: l.links_lost.load(std::sync::atomic::Ordering::Relaxed),
            timeouts: l.timeouts.load(std::sync::atomic::Ordering::Relaxed),
        }),
        preemption: s.preempt.map(|p| pb::PreemptionStatus {
            input: p.input.into(),
            stage: pb_preempt_stage(p.stage).into(),
            stage_elapsed_ms: s.at.since(p.stage_since).as_millis(),
            called_at_unix_ms: p.called_at.as_millis(),
            called: p.called,
        }),
        priority_requests: s
            .priority
            .iter()
            .map(|p| pb::PriorityStatus { phase: p.number().into(), granted: s.output.phase(p) == Indication::Green })
            .collect(),
        coordination: Some(pb::CoordinationStatus {
            state: pb_coordination(s.coordination).into(),
            local_cycle_position_s: s.cycle_time.unwrap_or_default().as_secs_f64(),
            cycle_s: s.cycle.as_secs_f64(),
            offset_s: s.offset.as_secs_f64(),
        }),
    }
}

/// A journal record for StreamEvents.
pub fn record(r: &Record, intersection_id: &str) -> pb::EventRecord {
    let kind = match &r.kind {
        RecordKind::Indiana(e) => {
            pb::event_record::Kind::Indiana(pb::IndianaEvent { code: e.code.code().into(), param: e.param.into() })
        }
        RecordKind::Audit(a) => pb::event_record::Kind::Audit(pb::AuditRecord {
            principal: a.principal.clone(),
            role: a.role.to_owned(),
            peer: a.peer.clone(),
            method: a.method.to_owned(),
            request: a.request.clone(),
            result: a.result.clone(),
            detail: a.detail.clone(),
            calls: a.calls,
        }),
    };
    pb::EventRecord {
        seq: r.seq,
        intersection_id: intersection_id.to_owned(),
        at_unix_ms: r.at_unix_ms,
        kind: Some(kind),
    }
}

fn latency(p: &Percentiles) -> pb::LatencyPercentiles {
    pb::LatencyPercentiles { count: p.count, p50_us: p.p50_us, p99_us: p.p99_us, p999_us: p.p999_us, max_us: p.max_us }
}

pub fn performance(
    intersection_id: &str,
    m: &IntersectionMeasures,
    tick: &Percentiles,
    jitter: &Percentiles,
) -> pb::PerformanceMeasures {
    pb::PerformanceMeasures {
        intersection_id: intersection_id.to_owned(),
        window_start_unix_ms: m.window_start.as_millis(),
        window_ms: m.window.as_millis(),
        phases: m
            .phases
            .iter()
            .map(|p| pb::PhaseMeasures {
                phase: p.phase.number().into(),
                volume: p.counts.volume,
                occupancy: p.occupancy,
                greens: p.counts.greens,
                split_failures: p.counts.split_failures,
                arrivals_on_green: p.arrivals_on_green.unwrap_or(0.0),
                max_out_share: p.max_out_share,
                gap_out_share: p.gap_out_share,
                force_off_share: p.force_off_share,
                arrivals: p.counts.arrivals,
                ped_actuations: p.counts.ped_actuations,
                ped_walks: p.counts.ped_walks,
                ped_delay_mean_ms: p.counts.ped_delay_ms.checked_div(p.counts.ped_waits).unwrap_or(0),
                approach_delay_per_vehicle_s: p.delay_per_vehicle_s.unwrap_or(0.0),
                arrivals_on_red: p.counts.arrivals_on_red,
                approach_delay_ms: p.counts.approach_delay_ms,
                priority_requests: p.counts.priority_requests,
                priority_services: p.counts.priority_services,
            })
            .collect(),
        tick_latency: Some(latency(tick)),
        tick_jitter: Some(latency(jitter)),
        lanes: lane_volumes(&m.lanes),
        bins: m
            .bins
            .iter()
            .map(|b| pb::MeasureBin {
                start_unix_ms: b.start.as_millis(),
                phases: b
                    .phases
                    .iter()
                    .map(|(p, c)| pb::PhaseBin {
                        phase: p.number().into(),
                        volume: c.volume,
                        arrivals: c.arrivals,
                        arrivals_on_green: c.arrivals_on_green,
                        greens: c.greens,
                        split_failures: c.split_failures,
                        ped_actuations: c.ped_actuations,
                        ped_walks: c.ped_walks,
                        ped_waits: c.ped_waits,
                        ped_delay_ms: c.ped_delay_ms,
                        arrivals_on_red: c.arrivals_on_red,
                        approach_delay_ms: c.approach_delay_ms,
                        priority_requests: c.priority_requests,
                        priority_services: c.priority_services,
                    })
                    .collect(),
                lanes: lane_volumes(&b.lanes),
                preemptions: preemption_counts(&b.preempts),
            })
            .collect(),
        preemptions: preemption_counts(&m.preempts),
    }
}

fn preemption_counts(preempts: &[(u8, PreemptCounts)]) -> Vec<pb::PreemptionCounts> {
    preempts
        .iter()
        .map(|&(input, c)| pb::PreemptionCounts {
            input: input.into(),
            requests: c.requests,
            services: c.services,
            input_on_ms: c.input_on_ms,
            dwells: c.dwells,
            dwell_ms: c.dwell_ms,
        })
        .collect()
}

fn lane_volumes(lanes: &[LaneVolume]) -> Vec<pb::LaneVolume> {
    lanes.iter().map(|l| pb::LaneVolume { detector: l.detector.number().into(), volume: l.volume }).collect()
}

// === control ===

/// Longest plan name accepted.
const MAX_NAME_LEN: usize = 64;

/// A TimingPlan as the `[[plan]]` table a controller file would hold. Only
/// what TOML cannot say is checked here (enum and integer ranges, repeated
/// phases); everything else is left to the controller file validator, so
/// an engineer gets the same verdict from `greenwave check`.
pub fn plan_table(plan: &pb::TimingPlan) -> Result<toml::Table, Status> {
    let mut v = Violations::default();
    let number = u8::try_from(plan.number).ok().filter(|&n| n > 0);
    if number.is_none() {
        v.add("plan.number", format!("{} is not a plan number (1..=255)", plan.number));
    }
    let mode = match pb::PlanMode::try_from(plan.mode) {
        Ok(pb::PlanMode::Free) => "free",
        Ok(pb::PlanMode::Coordinated) => "coordinated",
        Ok(pb::PlanMode::Fixed) => "fixed",
        Ok(pb::PlanMode::Unspecified) => {
            v.add("plan.mode", "must be set (PLAN_MODE_UNSPECIFIED)");
            ""
        }
        Err(_) => {
            v.add("plan.mode", format!("{} is not a PlanMode", plan.mode));
            ""
        }
    };
    if plan.name.chars().count() > MAX_NAME_LEN || plan.name.chars().any(char::is_control) {
        v.add("plan.name", format!("at most {MAX_NAME_LEN} printable characters"));
    }
    let splits = splits_table(&plan.splits_s, "plan.splits_s", &mut v);
    let mut seen = crate::core::PhaseSet::EMPTY;
    let mut coordinated = Vec::new();
    for (i, &n) in plan.coordinated.iter().enumerate() {
        let field = format!("plan.coordinated[{i}]");
        match phase(n, &field) {
            Ok(p) if seen.contains(p) => v.add(field, format!("phase {p} is listed twice")),
            Ok(p) => {
                seen.insert(p);
                coordinated.push(toml::Value::from(i64::from(p.number())));
            }
            Err(_) => v.add(field, format!("{n} is not a phase number (1..=16)")),
        }
    }
    v.check("timing plan")?;
    let mut t = toml::Table::new();
    t.insert("number".into(), i64::from(number.unwrap_or_default()).into());
    if !plan.name.is_empty() {
        t.insert("name".into(), plan.name.clone().into());
    }
    t.insert("mode".into(), mode.into());
    if plan.cycle_s != 0.0 {
        t.insert("cycle_s".into(), plan.cycle_s.into());
    }
    if plan.offset_s != 0.0 {
        t.insert("offset_s".into(), plan.offset_s.into());
    }
    if !splits.is_empty() {
        t.insert("splits_s".into(), splits.into());
    }
    if !coordinated.is_empty() {
        t.insert("coordinated".into(), coordinated.into());
    }
    if plan.max2 {
        t.insert("max".into(), "max2".into());
    }
    Ok(t)
}

/// `[{phase, split_s}]` → `{ "2" = 42.0, ... }`; a bad or repeated phase
/// is added to `v` and left out.
pub fn splits_table(splits: &[pb::PhaseSplit], field: &str, v: &mut Violations) -> toml::Table {
    let mut t = toml::Table::new();
    for (i, s) in splits.iter().enumerate() {
        let at = format!("{field}[{i}].phase");
        match phase(s.phase, &at) {
            Ok(p) if t.contains_key(&p.number().to_string()) => v.add(at, format!("phase {p} is listed twice")),
            Ok(p) => {
                t.insert(p.number().to_string(), s.split_s.into());
            }
            Err(_) => v.add(at, format!("{} is not a phase number (1..=16)", s.phase)),
        }
    }
    t
}
