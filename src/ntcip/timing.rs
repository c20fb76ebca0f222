//! Timing SETs (phase times, pattern splits) as edits of the controller
//! file: a SET of `phaseMinimumGreen.2` writes `min_green_s` of the
//! `[[phase]]` numbered 2. The agent collects a request's timing SETs
//! into one edit, and the whole file then goes through the validation and
//! staging of gRPC ApplyTimingPlan ([`crate::api::gateway::Gateway`]), as
//! the GB/T 20999 adapter's day plan sets do: the file validator judges
//! the request's values together (splits that must still add up to the
//! cycle are sent in one request).

use super::mib::Object;

/// One timing SET, in the MIB's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimingSet {
    pub object: Object,
    /// The row: `[phase]`, or `[split table, phase]` for `splitTime`.
    pub row: [u32; 2],
    pub value: i64,
}

/// Why a timing SET has nowhere to go in the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoRow {
    #[error("phase {0} is not defined in the controller file")]
    Phase(u32),
    #[error("pattern {0} is not defined in the controller file")]
    Pattern(u32),
    #[error("pattern {0} has no splits (a free or adaptive plan): it runs no split table")]
    NoSplits(u32),
    #[error("{0:?} is not a timing object")]
    NotTiming(Object),
}

/// The controller file key an object writes, and its unit: tenths of a
/// second (`true`) or seconds.
fn phase_key(object: Object) -> Option<(&'static str, bool)> {
    Some(match object {
        Object::PhaseWalk => ("walk_s", false),
        Object::PhasePedestrianClear => ("ped_clear_s", false),
        Object::PhaseMinimumGreen => ("min_green_s", false),
        Object::PhasePassage => ("passage_s", true),
        Object::PhaseMaximum1 => ("max1_s", false),
        Object::PhaseYellowChange => ("yellow_s", true),
        Object::PhaseRedClear => ("red_clear_s", true),
        _ => return None,
    })
}

/// Whether the agent takes `object` as a timing SET.
pub fn is_timing(object: Object) -> bool {
    object == Object::SplitTime || phase_key(object).is_some()
}

/// The `[[name]]` entry of `table` whose `key` is `number`.
fn numbered<'t>(table: &'t mut toml::Table, name: &str, key: &str, number: u32) -> Option<&'t mut toml::Table> {
    table
        .get_mut(name)?
        .as_array_mut()?
        .iter_mut()
        .filter_map(toml::Value::as_table_mut)
        .find(|t| t.get(key).and_then(toml::Value::as_integer) == Some(i64::from(number)))
}

/// Writes `set` into the controller file `table`.
///
/// # Errors
/// The file has no phase, pattern or split table for its row.
pub fn apply(table: &mut toml::Table, set: TimingSet) -> Result<(), NoRow> {
    let [row, phase] = set.row;
    if set.object == Object::SplitTime {
        let plan = numbered(table, "plan", "number", row).ok_or(NoRow::Pattern(row))?;
        let splits = plan.get_mut("splits_s").and_then(toml::Value::as_table_mut).ok_or(NoRow::NoSplits(row))?;
        splits.insert(phase.to_string(), toml::Value::Float(set.value as f64));
        return Ok(());
    }
    let (key, tenths) = phase_key(set.object).ok_or(NoRow::NotTiming(set.object))?;
    let entry = numbered(table, "phase", "number", row).ok_or(NoRow::Phase(row))?;
    let seconds = if tenths { set.value as f64 / 10.0 } else { set.value as f64 };
    entry.insert(key.into(), toml::Value::Float(seconds));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elm_and_oak() -> toml::Table {
        include_str!("../../controllers/elm-and-oak.toml").parse().expect("toml")
    }

    fn phase(table: &toml::Table, number: i64, key: &str) -> Option<f64> {
        table["phase"].as_array()?.iter().find(|p| p["number"].as_integer() == Some(number))?.get(key)?.as_float()
    }

    #[test]
    fn phase_times_land_on_their_keys_in_the_mibs_units() {
        let mut t = elm_and_oak();
        apply(&mut t, TimingSet { object: Object::PhaseMinimumGreen, row: [2, 0], value: 9 }).expect("min green");
        apply(&mut t, TimingSet { object: Object::PhaseYellowChange, row: [4, 0], value: 36 }).expect("yellow");
        apply(&mut t, TimingSet { object: Object::PhasePassage, row: [4, 0], value: 25 }).expect("passage");
        assert_eq!(phase(&t, 2, "min_green_s"), Some(9.0));
        assert_eq!(phase(&t, 4, "yellow_s"), Some(3.6), "tenths");
        assert_eq!(phase(&t, 4, "passage_s"), Some(2.5));
        assert_eq!(phase(&t, 4, "min_green_s"), Some(6.0), "others untouched");
    }

    #[test]
    fn splits_land_in_the_plans_split_table_and_missing_rows_are_named() {
        let mut t = elm_and_oak();
        apply(&mut t, TimingSet { object: Object::SplitTime, row: [2, 4], value: 30 }).expect("split");
        let plan = t["plan"].as_array().expect("plans").iter().find(|p| p["number"].as_integer() == Some(2));
        assert_eq!(plan.and_then(|p| p["splits_s"]["4"].as_float()), Some(30.0));
        let set = |object, row| apply(&mut elm_and_oak(), TimingSet { object, row, value: 10 });
        assert_eq!(set(Object::PhaseMaximum1, [3, 0]), Err(NoRow::Phase(3)));
        assert_eq!(set(Object::SplitTime, [7, 2]), Err(NoRow::Pattern(7)));
        assert_eq!(set(Object::SplitTime, [1, 2]), Err(NoRow::NoSplits(1)), "plan 1 runs free");
        assert_eq!(set(Object::UnitBackupTime, [0, 0]), Err(NoRow::NotTiming(Object::UnitBackupTime)));
    }
}
