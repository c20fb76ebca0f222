//! The data classes of GB/T 20999-2017 and the value enumerations a
//! centre reads and sets. The identifiers are reconstructed from open
//! implementations (`/work/shared/STANDARDS.md` §1.2: lining's
//! `signalControlCom.h` map, Aiton's and OpenATC's enumerations agree),
//! not from the purchased text; `docs/standards.md` lists them.

/// The eighteen data classes (the first byte of a data value's address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataClass {
    DeviceInfo,
    BaseInfo,
    LampGroups,
    Phases,
    Detectors,
    PhaseStages,
    PhaseSafety,
    Priority,
    Plans,
    TransitionConstraints,
    DayPlans,
    Schedules,
    RunStatus,
    TrafficData,
    Alarms,
    Faults,
    CentreControl,
    CommandPipe,
}

impl DataClass {
    const ALL: [DataClass; 18] = [
        DataClass::DeviceInfo,
        DataClass::BaseInfo,
        DataClass::LampGroups,
        DataClass::Phases,
        DataClass::Detectors,
        DataClass::PhaseStages,
        DataClass::PhaseSafety,
        DataClass::Priority,
        DataClass::Plans,
        DataClass::TransitionConstraints,
        DataClass::DayPlans,
        DataClass::Schedules,
        DataClass::RunStatus,
        DataClass::TrafficData,
        DataClass::Alarms,
        DataClass::Faults,
        DataClass::CentreControl,
        DataClass::CommandPipe,
    ];

    /// The class byte: 0x01 … 0x12 in the order above.
    pub fn byte(self) -> u8 {
        // ALL has 18 entries, so the position fits a byte.
        Self::ALL.iter().position(|&c| c == self).map_or(0, |k| k as u8 + 1)
    }

    pub fn from_byte(byte: u8) -> Option<DataClass> {
        Self::ALL.get(usize::from(byte).checked_sub(1)?).copied()
    }
}

/// Run modes (class 0x0D run status, class 0x11 centre control): the
/// three sources agree on these bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunMode {
    CentreTimeOfDay,
    CentreCoordinated,
    CentreAdaptive,
    CentreManual,
    LocalFixed,
    LocalActuated,
    LocalCoordinated,
    LocalAdaptive,
    LocalManual,
    Flash,
    AllRed,
    Off,
}

impl RunMode {
    const ALL: [(RunMode, u8); 12] = [
        (RunMode::CentreTimeOfDay, 0x11),
        (RunMode::CentreCoordinated, 0x13),
        (RunMode::CentreAdaptive, 0x14),
        (RunMode::CentreManual, 0x15),
        (RunMode::LocalFixed, 0x21),
        (RunMode::LocalActuated, 0x22),
        (RunMode::LocalCoordinated, 0x23),
        (RunMode::LocalAdaptive, 0x24),
        (RunMode::LocalManual, 0x25),
        (RunMode::Flash, 0x31),
        (RunMode::AllRed, 0x32),
        (RunMode::Off, 0x33),
    ];

    pub fn byte(self) -> u8 {
        Self::ALL.iter().find(|(m, _)| *m == self).map_or(0, |&(_, b)| b)
    }

    pub fn from_byte(byte: u8) -> Option<RunMode> {
        Self::ALL.iter().find(|&&(_, b)| b == byte).map(|&(m, _)| m)
    }
}

/// A lamp group's state (class 0x03 status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LampState {
    Off,
    Red,
    RedFlash,
    Green,
    GreenFlash,
    Yellow,
    YellowFlash,
}

impl LampState {
    pub fn byte(self) -> u8 {
        match self {
            LampState::Off => 0x01,
            LampState::Red => 0x10,
            LampState::RedFlash => 0x11,
            LampState::Green => 0x20,
            LampState::GreenFlash => 0x21,
            LampState::Yellow => 0x30,
            LampState::YellowFlash => 0x31,
        }
    }
}

/// A phase stage's state (class 0x06 status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StageState {
    NotRunning,
    Running,
    Transition,
}

impl StageState {
    pub fn byte(self) -> u8 {
        match self {
            StageState::NotRunning => 0x10,
            StageState::Running => 0x20,
            StageState::Transition => 0x30,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_bytes_run_from_one_to_eighteen() {
        for byte in 0..=255u8 {
            match DataClass::from_byte(byte) {
                Some(class) => assert_eq!(class.byte(), byte),
                None => assert!(byte == 0 || byte > 0x12, "{byte:#x}"),
            }
        }
        assert_eq!(DataClass::from_byte(0x11), Some(DataClass::CentreControl));
    }

    #[test]
    fn run_mode_bytes_round_trip() {
        for (mode, byte) in RunMode::ALL {
            assert_eq!((mode.byte(), RunMode::from_byte(byte)), (byte, Some(mode)));
        }
        assert_eq!(RunMode::from_byte(0x43), None, "KeLi's private mode is not standard");
    }
}
