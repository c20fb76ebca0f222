//! What a GB/T 20999 centre reads, from Greenwave's model: each data
//! class's values (object, attribute, element) from the controller
//! definition in force and the latest snapshot. The identifiers follow
//! lining's map (`/work/shared/STANDARDS.md` §1.2); the mapping of each is
//! in `docs/standards.md`.

use crate::core::event::{Event, EventCode};
use crate::core::image::{Indication, PedIndication};
use crate::core::spec::{ControllerSpec, DetectorKind, PlanMode, ScheduleDays};
use crate::core::state::{FlashReason, Interval, OperatingMode, UnitState};
use crate::core::{PhaseSet, Snapshot, Span};
use crate::standards::gbt20999::classes::{DataClass, LampState, RunMode, StageState};
use crate::standards::gbt20999::stages::{StageView, phase_bitmap};
use crate::standards::gbt20999::{Address, ErrorCode};

/// Text fields (maker, installation road) are 128 bytes, zero-padded.
const TEXT_LEN: usize = 128;
/// Pedestrian heads are lamp groups 17…32: lamp group 16 + the phase.
pub const PED_LAMP_GROUP_BASE: u8 = 16;

/// One intersection as a centre sees it.
#[derive(Debug)]
pub struct View<'a> {
    pub spec: &'a ControllerSpec,
    /// `[intersection] name`.
    pub name: &'a str,
    pub snapshot: Option<&'a Snapshot>,
    pub stages: &'a StageView,
    pub controller_id: u32,
    /// Intersections this daemon runs.
    pub intersections: usize,
    /// This one's number in frames (from 1).
    pub intersection: u8,
    /// The fault log (class 0x10), oldest first: read from the event
    /// journal only when a query asks for the class.
    pub faults: &'a [FaultRecord],
}

/// One fault of the log (class 0x10): when, its fault type and the
/// fault action the controller took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    pub at_unix_ms: u64,
    pub kind: u8,
    pub action: u8,
}

/// Fault types (class 0x10) of the events Greenwave logs for a fault.
const FAULT_DETECTOR: u8 = 0x41;
/// Fault actions: none, to flash.
const ACTION_NONE: u8 = 0x00;
const ACTION_FLASH: u8 = 0x10;

/// The fault record an event of the journal is, if it is one: a detector
/// fault (Indiana 84–88, `docs/events.md`: type 0x41, no fault action) or
/// a flash for a fault (173 with a fault's reason: that reason's type,
/// action to flash).
pub fn fault_record(at_unix_ms: u64, event: &Event) -> Option<FaultRecord> {
    let (kind, action) = match event.code {
        EventCode::DetectorFaultOther
        | EventCode::DetectorFaultWatchdog
        | EventCode::DetectorFaultOpenLoop
        | EventCode::DetectorFaultShortedLoop
        | EventCode::DetectorFaultExcessiveChange => (FAULT_DETECTOR, ACTION_NONE),
        EventCode::UnitFlashStatusChange => (fault_flash(FlashReason::from_param(event.param)?)?, ACTION_FLASH),
        _ => return None,
    };
    Some(FaultRecord { at_unix_ms, kind, action })
}

/// Values read, in address order.
pub type Values = Vec<(Address, Vec<u8>)>;

/// The values `query` asks for (0 as object, attribute or element: all).
///
/// # Errors
/// NotPresent when nothing matches: an unknown class, one Greenwave does
/// not keep (priority, command pipe), or centre control, which is only set.
pub fn read(view: &View<'_>, query: Address) -> Result<Values, ErrorCode> {
    let class = DataClass::from_byte(query.class).ok_or(ErrorCode::NotPresent)?;
    let mut out = Out { class: query.class, values: Vec::new() };
    match class {
        DataClass::DeviceInfo => device(&mut out),
        DataClass::BaseInfo => base(view, &mut out),
        DataClass::LampGroups => lamp_groups(view, &mut out),
        DataClass::Phases => phases(view, &mut out),
        DataClass::Detectors => detectors(view, &mut out),
        DataClass::PhaseStages => stages(view, &mut out),
        DataClass::PhaseSafety => phase_safety(view, &mut out),
        DataClass::TransitionConstraints => transitions(view, &mut out),
        DataClass::Faults => faults(view, &mut out),
        DataClass::Plans => plans(view, &mut out),
        DataClass::DayPlans => day_plans(view, &mut out),
        DataClass::Schedules => schedules(view, &mut out),
        DataClass::RunStatus => run_status(view, &mut out),
        DataClass::TrafficData => traffic(view, &mut out),
        DataClass::Alarms => alarms(view, &mut out),
        _ => {}
    }
    let wanted = |a: &Address| {
        let any = |q: u8, v: u8| q == 0 || q == v;
        any(query.object, a.object) && any(query.attribute, a.attribute) && any(query.element, a.element)
    };
    let values: Values = out.values.into_iter().filter(|(a, _)| wanted(a)).collect();
    if values.is_empty() { Err(ErrorCode::NotPresent) } else { Ok(values) }
}

struct Out {
    class: u8,
    values: Values,
}

impl Out {
    fn put(&mut self, object: u8, attribute: u8, element: u8, value: impl Into<Vec<u8>>) {
        self.values.push((Address::new(self.class, object, attribute, element), value.into()));
    }
}

/// Whole seconds, rounded up so a time is never understated (a
/// clearance read as shorter than it runs would mislead a centre).
fn secs(s: Span) -> u64 {
    s.as_millis().div_ceil(1000)
}

fn secs_u8(s: Span) -> [u8; 1] {
    [u8::try_from(secs(s)).unwrap_or(u8::MAX)]
}

fn secs_u16(s: Span) -> [u8; 2] {
    u16::try_from(secs(s)).unwrap_or(u16::MAX).to_be_bytes()
}

/// `text` in `len` bytes, zero-padded, cut at a character boundary.
fn text(text: &str, len: usize) -> Vec<u8> {
    let mut end = text.len().min(len);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = text.as_bytes()[..end].to_vec();
    bytes.resize(len, 0);
    bytes
}

/// A count that fits a byte (phases, detectors and stages all do).
fn count(n: usize) -> [u8; 1] {
    [u8::try_from(n).unwrap_or(u8::MAX)]
}

fn device(out: &mut Out) {
    out.put(1, 0, 0, text("Greenwave", TEXT_LEN));
    // High two bytes hardware (none of its own), low two software.
    let major = env!("CARGO_PKG_VERSION_MAJOR").parse::<u8>().unwrap_or(0);
    let minor = env!("CARGO_PKG_VERSION_MINOR").parse::<u8>().unwrap_or(0);
    out.put(2, 0, 0, [0, 0, major, minor]);
}

fn base(view: &View<'_>, out: &mut Out) {
    out.put(1, 0, 0, text(view.name, TEXT_LEN));
    out.put(5, 0, 0, view.controller_id.to_be_bytes());
    out.put(6, 0, 0, count(view.intersections));
}

fn lamp_state(i: Indication) -> LampState {
    match i {
        Indication::Dark => LampState::Off,
        Indication::Red => LampState::Red,
        Indication::Yellow => LampState::Yellow,
        Indication::Green => LampState::Green,
        Indication::FlashingRed => LampState::RedFlash,
        Indication::FlashingYellow => LampState::YellowFlash,
    }
}

/// Pedestrian clearance shows as flashing green, as Chinese pedestrian
/// signals do (GB 14886's green flash).
fn ped_lamp_state(i: PedIndication) -> LampState {
    match i {
        PedIndication::Dark => LampState::Off,
        PedIndication::DontWalk => LampState::Red,
        PedIndication::FlashingDontWalk => LampState::GreenFlash,
        PedIndication::Walk => LampState::Green,
    }
}

/// Lamp groups: phase n's vehicle head is group n (type vehicle), its
/// pedestrian head group 16 + n (type pedestrian).
fn lamp_groups(view: &View<'_>, out: &mut Out) {
    const VEHICLE: u8 = 0x01;
    const PEDESTRIAN: u8 = 0x03;
    let peds = view.spec.phases.iter().filter(|p| p.timing.has_ped()).count();
    out.put(1, 0, 0, count(view.spec.phases.len() + peds));
    let output = view.snapshot.map(|s| &s.output);
    for p in &view.spec.phases {
        let n = p.id.number();
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [VEHICLE]);
        let state = output.map_or(LampState::Off, |o| lamp_state(o.phase(p.id)));
        out.put(3, 1, n, [state.byte()]);
    }
    for p in view.spec.phases.iter().filter(|p| p.timing.has_ped()) {
        let n = PED_LAMP_GROUP_BASE + p.id.number();
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [PEDESTRIAN]);
        let state = output.map_or(LampState::Off, |o| ped_lamp_state(o.ped(p.id)));
        out.put(3, 1, n, [state.byte()]);
    }
}

/// Phases: timings in whole seconds; losing right of way shows yellow
/// then red clearance.
fn phases(view: &View<'_>, out: &mut Out) {
    out.put(1, 0, 0, count(view.spec.phases.len()));
    for p in &view.spec.phases {
        let (n, t) = (p.id.number(), &p.timing);
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [n]);
        out.put(2, 3, n, [LampState::Yellow.byte()]);
        out.put(2, 4, n, secs_u8(t.yellow));
        out.put(2, 5, n, [LampState::Red.byte()]);
        out.put(2, 6, n, secs_u8(t.red_clear));
        out.put(2, 0x1B, n, secs_u16(t.min_green));
        out.put(2, 0x1C, n, secs_u16(t.max1));
        out.put(2, 0x1D, n, secs_u16(t.max2));
        out.put(2, 0x1E, n, secs_u16(t.passage));
    }
}

/// Detectors by channel: loops (type 0x01) for vehicle detectors; a
/// pedestrian push button has no type of its own in the standard's list
/// and reads as 0x00.
fn detectors(view: &View<'_>, out: &mut Out) {
    out.put(1, 0, 0, count(view.spec.detectors.len()));
    for d in &view.spec.detectors {
        let n = d.channel.number();
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [if d.kind == DetectorKind::Vehicle { 0x01 } else { 0x00 }]);
        let presence = view.snapshot.and_then(|s| s.detectors.get(d.channel.index())).is_some_and(|d| d.presence);
        out.put(3, 1, n, [n]);
        out.put(3, 2, n, [u8::from(presence)]);
    }
}

/// The phases the rings are timing, and whether all of them are green.
fn timing(snapshot: &Snapshot) -> (PhaseSet, bool) {
    let mut set = PhaseSet::EMPTY;
    let mut green = true;
    for r in snapshot.rings.iter().take(usize::from(snapshot.ring_count)) {
        if let Some(p) = r.phase
            && r.interval != Interval::Idle
        {
            set.insert(p);
            green &= r.interval == Interval::Green;
        }
    }
    (set, green)
}

/// The running stage's number, 0 when none (flash, all red, idle).
fn current_stage(view: &View<'_>) -> (u8, bool) {
    match view.snapshot.filter(|s| s.unit == UnitState::Run) {
        Some(s) => {
            let (set, green) = timing(s);
            (view.stages.current(set).unwrap_or(0), green)
        }
        None => (0, false),
    }
}

fn stages(view: &View<'_>, out: &mut Out) {
    let stages = view.stages.stages();
    out.put(1, 0, 0, count(stages.len()));
    let (running, green) = current_stage(view);
    for (k, &set) in stages.iter().enumerate() {
        // Fewer than 64 stages (StageView::derive caps them).
        let n = k as u8 + 1;
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, phase_bitmap(set));
        let state = match (n == running, green) {
            (false, _) => StageState::NotRunning,
            (true, true) => StageState::Running,
            (true, false) => StageState::Transition,
        };
        out.put(3, 1, n, [n]);
        out.put(3, 2, n, [state.byte()]);
    }
}

/// Plans by number: cycle, offset, the stage chain (every stage in
/// sequence order) and each stage's time from the splits.
fn plans(view: &View<'_>, out: &mut Out) {
    out.put(1, 0, 0, count(view.spec.plans.len()));
    let chain: Vec<u8> = (1..=view.stages.stages().len()).map(|k| k as u8).collect();
    for plan in &view.spec.plans {
        let n = plan.number;
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [view.intersection]);
        out.put(2, 3, n, secs_u16(plan.cycle));
        out.put(2, 5, n, secs_u16(plan.offset));
        out.put(2, 6, n, chain.clone());
        let times: Vec<u8> = view.stages.times(&plan.splits).into_iter().flat_map(secs_u16).collect();
        out.put(2, 7, n, times);
    }
}

/// Day plans: per segment its start (hour, minute) and plan.
fn day_plans(view: &View<'_>, out: &mut Out) {
    let day_plans = &view.spec.schedule.day_plans;
    out.put(1, 0, 0, count(day_plans.len()));
    for (k, d) in day_plans.iter().enumerate().take(usize::from(u8::MAX)) {
        let n = k as u8 + 1;
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [view.intersection]);
        let starts: Vec<u8> =
            d.events.iter().flat_map(|e| [(e.minute_of_day / 60) as u8, (e.minute_of_day % 60) as u8]).collect();
        out.put(2, 3, n, starts);
        out.put(2, 4, n, d.events.iter().map(|e| e.plan).collect::<Vec<u8>>());
    }
}

/// Every month (bits 1–12; bit 0 is reserved) and every date (bits 0–30)
/// of a schedule row.
pub const EVERY_MONTH: u16 = 0x1FFE;
pub const EVERY_DATE: u32 = 0x7FFF_FFFF;
/// Every weekday (bit 0 Sunday … bit 6 Saturday).
pub const EVERY_WEEKDAY: u8 = 0x7F;

/// Greenwave's weekdays (bit 0 Monday) as lining's map lays them out
/// (bit 0 Sunday, bit 1 Monday).
pub fn week_bits(monday_first: u8) -> u8 {
    (0..7).filter(|w| monday_first & 1 << w != 0).fold(0, |m, w| m | 1 << ((w + 1) % 7))
}

/// Schedules ([`crate::core::spec::Schedule::rows`]) in lining's bit
/// layout (weekday bit 0 Sunday; month bit 1 January; date bit 0 the
/// 1st): weekday rows (every month and date) at priority 2, then holidays
/// (their month and date, every weekday) at priority 1, above the
/// weekdays'.
fn schedules(view: &View<'_>, out: &mut Out) {
    let rows = view.spec.schedule.rows();
    out.put(1, 0, 0, count(rows.len()));
    for (k, row) in rows.into_iter().enumerate().take(usize::from(u8::MAX)) {
        let n = k as u8 + 1;
        let (priority, week, month, day) = match row.days {
            ScheduleDays::Weekdays(week) => (2u8, week_bits(week), EVERY_MONTH, EVERY_DATE),
            ScheduleDays::Date { month, day } => {
                (1, EVERY_WEEKDAY, 1u16 << month.clamp(1, 12), 1u32 << (day.clamp(1, 31) - 1))
            }
        };
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [view.intersection]);
        out.put(2, 3, n, [priority]);
        out.put(2, 4, n, [week]);
        out.put(2, 5, n, month.to_be_bytes());
        out.put(2, 6, n, day.to_be_bytes());
        out.put(2, 7, n, count(row.day_plan + 1));
    }
}

/// Phase safety: per phase its conflicts (object 1: 64-bit bitmap, bit 0
/// = phase 1) from the ring-barrier model and the configured conflicts
/// (`ControllerSpec::conflicts`, the matrix the monitor enforces), and its
/// green intervals (object 2: 64 bytes, byte k = to phase k + 1, in 0.1 s):
/// to a conflicting phase, the yellow and red clearance that end this
/// phase's green; 0 to a phase that may be green with it.
fn phase_safety(view: &View<'_>, out: &mut Out) {
    for p in &view.spec.phases {
        let n = p.id.number();
        let conflicts = view.spec.conflicts[p.id.index()];
        out.put(1, 1, n, [n]);
        out.put(1, 2, n, phase_bitmap(conflicts));
        let inter_green = (p.timing.yellow + p.timing.red_clear).as_millis().div_ceil(100);
        let tenths = u8::try_from(inter_green).unwrap_or(u8::MAX);
        let mut row = [0u8; 64];
        for q in conflicts.iter() {
            row[q.index()] = tenths;
        }
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, row);
    }
}

/// Transition constraints: per stage, 64 bytes (byte k = to stage k + 1):
/// 0 when the ring-barrier sequence reaches that stage directly (stages
/// without demand are skipped), else the number of the first stage on the
/// way that cannot be skipped because one of its phases is on recall.
fn transitions(view: &View<'_>, out: &mut Out) {
    let stages = view.stages.stages();
    let recalled = |set: PhaseSet| {
        view.spec.phases.iter().any(|p| set.contains(p.id) && p.timing.recall != crate::core::spec::Recall::None)
    };
    for from in 0..stages.len() {
        let mut row = [0u8; 64];
        for (to, slot) in row.iter_mut().enumerate().take(stages.len()) {
            // The stages strictly between, in sequence order.
            let between = (1..stages.len()).map(|d| (from + d) % stages.len()).take_while(|&k| k != to);
            *slot = between.into_iter().find(|&k| recalled(stages[k])).map_or(0, |k| k as u8 + 1);
        }
        let n = from as u8 + 1;
        out.put(1, 1, n, [n]);
        out.put(1, 2, n, row);
    }
}

/// The fault log: count (u32), then per record its number (u32), type,
/// time (year u16, month, day, hour, minute, second, UTC) and action.
fn faults(view: &View<'_>, out: &mut Out) {
    out.put(1, 0, 0, (view.faults.len() as u32).to_be_bytes());
    for (k, f) in view.faults.iter().enumerate().take(usize::from(u8::MAX)) {
        let n = k as u8 + 1;
        out.put(2, 1, n, (k as u32 + 1).to_be_bytes());
        out.put(2, 2, n, [f.kind]);
        out.put(2, 3, n, civil_utc(f.at_unix_ms));
        out.put(2, 4, n, [f.action]);
    }
}

/// A time as the standard's 7 bytes: year (u16), month, day, hour, minute,
/// second, in UTC.
fn civil_utc(unix_ms: u64) -> [u8; 7] {
    use chrono::{Datelike, Timelike};
    let Some(t) = i64::try_from(unix_ms).ok().and_then(chrono::DateTime::from_timestamp_millis) else {
        return [0; 7];
    };
    let [y0, y1] = u16::try_from(t.year()).unwrap_or(0).to_be_bytes();
    [y0, y1, t.month() as u8, t.day() as u8, t.hour() as u8, t.minute() as u8, t.second() as u8]
}

/// The run mode a centre reads: what the controller runs, local unless a
/// centre set it (Greenwave does not tell the two apart, so it is read as
/// local).
pub fn run_mode(snapshot: &Snapshot) -> RunMode {
    if let UnitState::Flash { .. } = snapshot.unit {
        return RunMode::Flash;
    }
    match snapshot.mode {
        OperatingMode::Scheduled => match snapshot.plan_mode {
            PlanMode::Free => RunMode::LocalActuated,
            PlanMode::Coordinated => RunMode::LocalCoordinated,
            PlanMode::Fixed => RunMode::LocalFixed,
        },
        OperatingMode::Actuated => RunMode::LocalActuated,
        OperatingMode::Coordinated => RunMode::LocalCoordinated,
        OperatingMode::Fixed => RunMode::LocalFixed,
        OperatingMode::Flash => RunMode::Flash,
        OperatingMode::Adaptive => RunMode::LocalAdaptive,
    }
}

/// Run status of this intersection (element = its number).
fn run_status(view: &View<'_>, out: &mut Out) {
    let Some(s) = view.snapshot else { return };
    let n = view.intersection;
    out.put(2, 1, n, [n]);
    out.put(2, 2, n, [run_mode(s).byte()]);
    out.put(2, 3, n, [s.plan]);
    out.put(2, 4, n, [current_stage(view).0]);
}

/// Traffic data: live presence (64-bit, bit 0 channel 1) and per channel
/// the running volume count and occupied time in ms since start (u32,
/// wrapping): Greenwave keeps totals, so a centre takes the difference of
/// two reads over its own period.
fn traffic(view: &View<'_>, out: &mut Out) {
    let Some(s) = view.snapshot else { return };
    let present = s.detectors.iter().take(usize::from(s.detector_count)).filter(|d| d.presence);
    let bits = present.fold(0u64, |m, d| m | 1u64.checked_shl(u32::from(d.channel).wrapping_sub(1)).unwrap_or(0));
    out.put(1, 0, 0, bits.to_be_bytes());
    for d in s.detectors.iter().take(usize::from(s.detector_count)) {
        out.put(2, 1, d.channel, [d.channel]);
        out.put(2, 2, d.channel, d.volume.to_be_bytes());
        out.put(2, 3, d.channel, (d.occupied_ms as u32).to_be_bytes());
    }
}

/// Alarms now: detector faults (type 0x30, value the channel) and flash
/// for a fault (type 0x40 device, value the reason's code below).
fn alarms(view: &View<'_>, out: &mut Out) {
    const DETECTOR: u8 = 0x30;
    const DEVICE: u8 = 0x40;
    let Some(s) = view.snapshot else { return };
    let mut rows: Vec<(u8, u8)> = s
        .detectors
        .iter()
        .take(usize::from(s.detector_count))
        .filter(|d| d.fault.is_some())
        .map(|d| (DETECTOR, d.channel))
        .collect();
    if let UnitState::Flash { reason, .. } = s.unit
        && let Some(code) = fault_flash(reason)
    {
        rows.push((DEVICE, code));
    }
    out.put(1, 0, 0, count(rows.len()));
    for (k, (kind, value)) in rows.into_iter().enumerate().take(usize::from(u8::MAX)) {
        let n = k as u8 + 1;
        out.put(2, 1, n, [n]);
        out.put(2, 2, n, [kind]);
        out.put(2, 3, n, [value]);
    }
}

/// Flash reasons that are faults, with the fault-type codes of class 0x10
/// where one fits (green conflict 0x10, communication 0x30, self 0x40,
/// configuration 0x50); start-up, operator, the cabinet's manual switch
/// and shutdown flash are not alarms.
fn fault_flash(reason: FlashReason) -> Option<u8> {
    match reason {
        FlashReason::MonitorTrip | FlashReason::CabinetMonitor => Some(0x10),
        FlashReason::CabinetLinkLost | FlashReason::SecondMaster => Some(0x30),
        FlashReason::Overrun => Some(0x40),
        FlashReason::ConfigInvalid => Some(0x50),
        FlashReason::Startup | FlashReason::Operator | FlashReason::ManualSwitch | FlashReason::Shutdown => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::eight_phase;
    use crate::core::{Controller, Instant};

    fn with_view<T>(f: impl FnOnce(&View<'_>) -> T) -> T {
        let spec = eight_phase();
        let snapshot = Controller::new(spec.clone(), Instant::ZERO).snapshot();
        let stages = StageView::derive(&spec);
        let view = View {
            spec: &spec,
            name: "Test Rd & Main St",
            snapshot: Some(&snapshot),
            stages: &stages,
            controller_id: 7,
            intersections: 1,
            intersection: 1,
            faults: &[FaultRecord { at_unix_ms: 1_765_000_000_000, kind: 0x10, action: ACTION_FLASH }],
        };
        f(&view)
    }

    #[test]
    fn zero_reads_all_and_an_exact_address_one_value() {
        with_view(|view| {
            let all = read(view, Address::new(0x04, 0, 0, 0)).expect("phases");
            assert_eq!(all.len(), 1 + 8 * 10);
            assert_eq!(all[0], (Address::new(0x04, 1, 0, 0), vec![8]));
            let min_green = read(view, Address::new(0x04, 2, 0x1B, 2)).expect("phase 2 min green");
            assert_eq!(min_green, vec![(Address::new(0x04, 2, 0x1B, 2), vec![0, 8])]);
            // Yellow 3.5 s reads 4: a clearance never reads shorter than it runs.
            assert_eq!(read(view, Address::new(0x04, 2, 4, 2)).expect("yellow")[0].1, vec![4]);
            let row = read(view, Address::new(0x04, 2, 0, 3)).expect("phase 3's row");
            assert!(row.len() == 10 && row.iter().all(|(a, _)| a.element == 3), "{row:?}");
        });
    }

    #[test]
    fn classes_not_kept_and_unknown_addresses_are_not_present() {
        with_view(|view| {
            for class in [0x00, 0x08, 0x11, 0x12, 0x13, 0xFF] {
                assert_eq!(read(view, Address::new(class, 0, 0, 0)), Err(ErrorCode::NotPresent), "{class:#x}");
            }
            assert_eq!(read(view, Address::new(0x04, 2, 0x1B, 9)), Err(ErrorCode::NotPresent), "no phase 9");
        });
    }

    #[test]
    fn lamp_groups_are_vehicle_heads_then_pedestrian_heads() {
        with_view(|view| {
            let count = read(view, Address::new(0x03, 1, 0, 0)).expect("count");
            assert_eq!(count[0].1, vec![12], "8 vehicle heads and the 4 throughs' pedestrian heads");
            let ped_type = read(view, Address::new(0x03, 2, 2, PED_LAMP_GROUP_BASE + 2)).expect("group 18");
            assert_eq!(ped_type[0].1, vec![0x03]);
            // Start-up flash: flashing yellow on the mains, flashing red elsewhere.
            let states = read(view, Address::new(0x03, 3, 1, 0)).expect("states");
            let state = |n: u8| states.iter().find(|(a, _)| a.element == n).map(|(_, v)| v[0]);
            assert_eq!((state(2), state(1)), (Some(LampState::YellowFlash.byte()), Some(LampState::RedFlash.byte())));
        });
    }

    #[test]
    fn start_up_flash_reads_as_flash_with_no_stage_and_no_alarm() {
        with_view(|view| {
            let status = read(view, Address::new(0x0D, 2, 0, 0)).expect("run status");
            let value = |attribute: u8| status.iter().find(|(a, _)| a.attribute == attribute).map(|(_, v)| v[0]);
            assert_eq!((value(2), value(4)), (Some(RunMode::Flash.byte()), Some(0)));
            assert_eq!(read(view, Address::new(0x0F, 1, 0, 0)).expect("alarm count")[0].1, vec![0]);
            let stage = read(view, Address::new(0x06, 2, 2, 1)).expect("stage 1");
            assert_eq!(stage[0].1, phase_bitmap(PhaseSet::from_bits(0b1_0001)).to_vec());
        });
    }

    /// The textbook dual ring: phase 2 conflicts with 1 (same ring) and
    /// with 3, 4, 7, 8 (the other barrier group), not with 5 or 6; its
    /// inter-green is yellow 3.5 + red 2.0 s. Its mains 2 and 6 are on
    /// recall, so stage {2,6} cannot be skipped on the way round.
    #[test]
    fn phase_safety_and_transition_constraints_come_from_the_ring_barrier_model() {
        with_view(|view| {
            let conflicts = read(view, Address::new(0x07, 1, 2, 2)).expect("phase 2's conflicts");
            let want = PhaseSet::from_bits(0b1100_1101);
            assert_eq!(conflicts[0].1, phase_bitmap(want).to_vec());
            let green = read(view, Address::new(0x07, 2, 2, 2)).expect("phase 2's green intervals");
            assert_eq!((green[0].1.len(), green[0].1[0], green[0].1[4], green[0].1[2]), (64, 55, 0, 55));
            // Stage {1,5} to {3,7} goes via {2,6}; to {2,6} directly.
            let from_1 = read(view, Address::new(0x0A, 1, 2, 1)).expect("stage 1's constraints");
            assert_eq!(from_1[0].1[..4], [2, 0, 2, 2], "round to itself via {{2,6}} too");
            let faults = read(view, Address::new(0x10, 0, 0, 0)).expect("fault log");
            assert_eq!(faults[0].1, vec![0, 0, 0, 1], "one fault");
            let time = faults.iter().find(|(a, _)| a.object == 2 && a.attribute == 3).expect("time");
            assert_eq!(time.1, vec![0x07, 0xE9, 12, 6, 5, 46, 40], "2025-12-06 05:46:40 UTC");
        });
    }

    #[test]
    fn flash_for_a_fault_and_detector_faults_are_fault_records() {
        let at = |code, param| fault_record(7, &Event { at: Instant::ZERO, code, param });
        let trip = at(EventCode::UnitFlashStatusChange, FlashReason::MonitorTrip as u16);
        assert_eq!(trip, Some(FaultRecord { at_unix_ms: 7, kind: 0x10, action: ACTION_FLASH }));
        assert_eq!(at(EventCode::UnitFlashStatusChange, FlashReason::Operator as u16), None, "not a fault");
        assert_eq!(at(EventCode::DetectorFaultOpenLoop, 3).map(|f| f.kind), Some(FAULT_DETECTOR));
        assert_eq!(at(EventCode::DetectorOn, 3), None);
    }

    #[test]
    fn weekdays_read_in_linings_layout() {
        assert_eq!(week_bits(0b001_1111), 0b011_1110, "Monday–Friday: bits 1–5");
        assert_eq!(week_bits(0b110_0000), 0b100_0001, "Saturday bit 6, Sunday bit 0");
    }
}
