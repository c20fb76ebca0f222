//! The controller file exactly as written: one struct per TOML table, one
//! field per key, units in the key names (see `controllers/README.md`).
//!
//! Nothing here checks meaning, only shape. Keys that must be present are
//! still `Option`: `validate` reports a missing key with its full path
//! alongside every other problem, instead of serde stopping at the first.
//! Keys whose default is zero, false or the first enum variant use serde's
//! default; every other default is a named constant in `validate`.
//! Unknown keys are reported by the strict deserializer in `de`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole `controllers/<id>.toml`.
#[derive(Debug, Default, Deserialize)]
pub struct RawController {
    pub intersection: Option<RawIntersection>,
    pub cabinet: Option<RawCabinet>,
    pub startup: Option<RawStartup>,
    pub sequence: Option<RawSequence>,
    #[serde(default)]
    pub phase: Vec<RawPhase>,
    #[serde(default)]
    pub detector: Vec<RawDetector>,
    #[serde(default)]
    pub overlap: Vec<RawOverlap>,
    #[serde(default)]
    pub plan: Vec<RawPlan>,
    pub schedule: Option<RawSchedule>,
    pub simulation: Option<RawSimulation>,
    #[serde(default)]
    pub preempt: Vec<RawPreempt>,
    pub transit_priority: Option<RawTransitPriority>,
    pub adaptive: Option<RawAdaptive>,
    #[serde(default)]
    pub camera_zone: Vec<RawCameraZone>,
}

/// `[[camera_zone]]`: `{ id = "north-cam/1", detector = 17 }`
#[derive(Debug, Default, Deserialize)]
pub struct RawCameraZone {
    pub id: Option<String>,
    pub detector: Option<u8>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawAdaptiveStyle {
    Cycle,
    Free,
    Schedule,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawMaxFloor {
    Max,
    MinService,
}

/// `[adaptive]`: bounds of the adaptive optimizer.
#[derive(Debug, Default, Deserialize)]
pub struct RawAdaptive {
    pub style: Option<RawAdaptiveStyle>,
    pub max_floor: Option<RawMaxFloor>,
    pub max_headroom: Option<f64>,
    pub min_cycle_s: Option<f64>,
    pub max_cycle_s: Option<f64>,
    pub max_cycle_step_s: Option<f64>,
    pub saturation_flow_vphpl: Option<f64>,
    pub startup_lost_s: Option<f64>,
    pub smoothing: Option<f64>,
    pub horizon_s: Option<f64>,
}

/// `[[preempt]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawPreempt {
    pub input: Option<u8>,
    pub name: Option<String>,
    pub delay_s: Option<f64>,
    pub min_duration_s: Option<f64>,
    pub dwell_phases: Option<Vec<u8>>,
    pub exit_phases: Option<Vec<u8>>,
    pub priority: Option<u8>,
    pub debounce_s: Option<f64>,
    pub max_presence_s: Option<f64>,
    pub track_clearance_phases: Option<Vec<u8>>,
    pub track_clearance_s: Option<f64>,
    pub ped_truncation: Option<bool>,
    pub truncated_walk_s: Option<f64>,
}

/// `[transit_priority]`
#[derive(Debug, Default, Deserialize)]
pub struct RawTransitPriority {
    pub max_extension_s: Option<f64>,
}

/// `[intersection]`
#[derive(Debug, Default, Deserialize)]
pub struct RawIntersection {
    pub id: Option<String>,
    pub name: Option<String>,
    pub time_zone: Option<String>,
    pub location: Option<RawLocation>,
}

/// `location = { lat = 22.5431, lon = 114.0579 }`: WGS 84 degrees.
#[derive(Debug, Default, Deserialize)]
pub struct RawLocation {
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// `[cabinet]`
#[derive(Debug, Default, Deserialize)]
pub struct RawCabinet {
    pub kind: Option<RawCabinetKind>,
    pub address: Option<String>,
    pub path: Option<String>,
    pub baud: Option<u32>,
    pub parity: Option<RawParity>,
    pub data_bits: Option<u8>,
    pub stop_bits: Option<u8>,
    pub unit_id: Option<u8>,
    pub connect_timeout_s: Option<f64>,
    pub request_timeout_s: Option<f64>,
    pub link_timeout_s: Option<f64>,
    pub backoff_min_s: Option<f64>,
    pub backoff_max_s: Option<f64>,
    pub poll_s: Option<f64>,
    pub read_ahead_s: Option<f64>,
    pub volume: Option<RawVolumeSource>,
    pub camera_zone_channels: Option<Vec<u8>>,
    pub one_master: Option<RawOneMaster>,
    pub registers: Option<RawRegisters>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawCabinetKind {
    Simulated,
    ModbusTcp,
    ModbusRtu,
    ModbusRtuOverTcp,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawParity {
    None,
    Even,
    Odd,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawVolumeSource {
    Counters,
    Edges,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawOneMaster {
    ReadBack,
    Off,
}

/// `[cabinet.registers]`: start addresses (0-based wire addresses) and
/// counter block sizes; see `docs/modbus.md`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRegisters {
    pub presence: Option<u16>,
    pub status: Option<u16>,
    pub sim_time: Option<u16>,
    pub sim_step: Option<u16>,
    pub volume: Option<u16>,
    pub volume_channels: Option<u16>,
    pub camera: Option<u16>,
    pub camera_zones: Option<u16>,
    pub camera_queue: Option<u16>,
    pub camera_queue_zones: Option<u16>,
    pub preempt: Option<u16>,
    pub priority: Option<u16>,
    pub vehicle: Option<u16>,
    pub ped: Option<u16>,
    pub overlap: Option<u16>,
    pub heartbeat: Option<u16>,
    pub requested_mode: Option<u16>,
    pub flash_reason: Option<u16>,
    pub step_ack: Option<u16>,
    pub ped_countdown: Option<u16>,
    pub aps: Option<u16>,
    pub ped_outputs: Option<bool>,
}

/// `[startup]`
#[derive(Debug, Default, Deserialize)]
pub struct RawStartup {
    pub flash_s: Option<f64>,
    pub all_red_s: Option<f64>,
    pub phases: Option<Vec<u8>>,
}

/// `[sequence]`
#[derive(Debug, Default, Deserialize)]
pub struct RawSequence {
    pub rings: Option<Vec<Vec<u8>>>,
    pub barriers: Option<Vec<Vec<u8>>>,
    #[serde(default)]
    pub conflicts: Vec<[u8; 2]>,
}

/// `[[phase]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawPhase {
    pub number: Option<u8>,
    pub name: Option<String>,
    pub min_green_s: Option<f64>,
    pub passage_s: Option<f64>,
    pub added_initial_s: Option<f64>,
    pub max_initial_s: Option<f64>,
    pub time_before_reduction_s: Option<f64>,
    pub time_to_reduce_s: Option<f64>,
    pub min_gap_s: Option<f64>,
    pub max1_s: Option<f64>,
    pub max2_s: Option<f64>,
    pub yellow_s: Option<f64>,
    pub red_clear_s: Option<f64>,
    #[serde(default)]
    pub walk_s: f64,
    #[serde(default)]
    pub ped_clear_s: f64,
    pub leading_walk_s: Option<f64>,
    pub extended_ped_clear_s: Option<f64>,
    #[serde(default)]
    pub recall: RawRecall,
    #[serde(default)]
    pub dual_entry: bool,
    #[serde(default)]
    pub conditional_service: bool,
    pub conditional_service_min_s: Option<f64>,
    #[serde(default)]
    pub rest_in_walk: bool,
    #[serde(default)]
    pub ped_recycle: bool,
    #[serde(default)]
    pub flash: RawFlash,
    pub approach_speed_kmh: Option<f64>,
    pub approach_speed_mph: Option<f64>,
    #[serde(default)]
    pub grade_percent: f64,
    pub crossing_width_m: Option<f64>,
    pub ped_crossing_m: Option<f64>,
    pub ped_crossing_ft: Option<f64>,
    pub walking_speed_fps: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawRecall {
    #[default]
    None,
    Min,
    Max,
    Ped,
    Soft,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawFlash {
    #[default]
    Red,
    Yellow,
}

/// `[[detector]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawDetector {
    pub channel: Option<u8>,
    #[serde(default)]
    pub kind: RawDetectorKind,
    #[serde(default)]
    pub placement: RawDetectorPlacement,
    /// Advance loops: how far upstream of the stop bar, or how long a car
    /// takes from the loop to the stop bar (one of the two).
    pub distance_m: Option<f64>,
    pub travel_time_s: Option<f64>,
    pub calls: Option<Vec<u8>>,
    pub extends: Option<Vec<u8>>,
    #[serde(default)]
    pub delay_s: f64,
    #[serde(default)]
    pub extend_s: f64,
    #[serde(default)]
    pub no_activity_s: f64,
    #[serde(default)]
    pub max_presence_s: f64,
    #[serde(default)]
    pub erratic_per_minute: u16,
    pub long_press_s: Option<f64>,
    #[serde(default)]
    pub extension_input: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawDetectorKind {
    #[default]
    Vehicle,
    Pedestrian,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RawDetectorPlacement {
    #[default]
    StopBar,
    Advance,
}

/// `[[overlap]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawOverlap {
    pub id: Option<String>,
    pub parents: Option<Vec<u8>>,
    pub conflicts: Option<Vec<u8>>,
    #[serde(default)]
    pub kind: RawOverlapKind,
    pub permissive_phase: Option<u8>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawOverlapKind {
    #[default]
    Normal,
    /// Flashing yellow arrow (protected/permissive left turn).
    Fya,
}

/// `[[plan]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawPlan {
    pub number: Option<u8>,
    pub name: Option<String>,
    pub mode: Option<RawPlanMode>,
    #[serde(default)]
    pub cycle_s: f64,
    #[serde(default)]
    pub offset_s: f64,
    /// Keyed by phase number as written (`{ 1 = 15, 2 = 45 }`).
    #[serde(default)]
    pub splits_s: BTreeMap<String, f64>,
    #[serde(default)]
    pub coordinated: Vec<u8>,
    #[serde(default)]
    pub max: RawMaxSelect,
    #[serde(default)]
    pub omit: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawPlanMode {
    Free,
    Coordinated,
    Fixed,
    /// Coordinated, with cycle and splits re-planned every cycle.
    Adaptive,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawMaxSelect {
    #[default]
    Max1,
    Max2,
}

/// `[schedule]`
#[derive(Debug, Default, Deserialize)]
pub struct RawSchedule {
    pub default_plan: Option<u8>,
    pub week: Option<Vec<String>>,
    #[serde(default)]
    pub day_plan: Vec<RawDayPlan>,
    #[serde(default)]
    pub holiday: Vec<RawHoliday>,
}

/// `[[schedule.day_plan]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawDayPlan {
    pub name: Option<String>,
    pub events: Option<Vec<RawDayPlanEvent>>,
}

/// `{ at = "07:00", plan = 2 }`
#[derive(Debug, Default, Deserialize)]
pub struct RawDayPlanEvent {
    pub at: Option<String>,
    pub plan: Option<u8>,
}

/// `[[schedule.holiday]]`
#[derive(Debug, Default, Deserialize)]
pub struct RawHoliday {
    pub date: Option<String>,
    pub day_plan: Option<String>,
}

/// `[simulation]`
#[derive(Debug, Default, Deserialize)]
pub struct RawSimulation {
    pub seed: Option<u64>,
    pub saturation_headway_s: Option<f64>,
    #[serde(default)]
    pub lanes: Vec<RawLane>,
    #[serde(default)]
    pub pedestrians: Vec<RawPedestrians>,
}

/// `{ detector = 1, phase = 2, arrivals_per_hour = 600 }`
#[derive(Debug, Default, Deserialize)]
pub struct RawLane {
    pub detector: Option<u8>,
    pub phase: Option<u8>,
    pub overlap: Option<String>,
    pub arrivals_per_hour: Option<f64>,
}

/// `{ detector = 20, per_hour = 60 }`
#[derive(Debug, Default, Deserialize)]
pub struct RawPedestrians {
    pub detector: Option<u8>,
    pub per_hour: Option<f64>,
}
