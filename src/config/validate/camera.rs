//! `[[camera_zone]]`: video detection zones and the detector channels they
//! drive (the gRPC Ingest service maps a camera's zone id through these).

use crate::core::DetectorChannel;

use super::super::CameraZone;
use super::super::raw::RawCameraZone;
use super::{Validator, root};

/// Longest zone id: ids are names, not payloads.
const MAX_ZONE_ID_LEN: usize = 64;

impl Validator<'_> {
    pub(super) fn camera_zones(&mut self, raw: &[RawCameraZone]) -> Vec<CameraZone> {
        let table = root().key("camera_zone");
        let mut zones: Vec<CameraZone> = Vec::new();
        for (i, z) in raw.iter().enumerate() {
            let at = table.index(i);
            let id_at = at.key("id");
            let id = self.required(z.id.as_ref(), &id_at).and_then(|id| {
                let id = id.trim();
                if id.is_empty() || id.len() > MAX_ZONE_ID_LEN || id.chars().any(char::is_control) {
                    self.error(&id_at, format!("must be 1..={MAX_ZONE_ID_LEN} printable characters"));
                    return None;
                }
                if zones.iter().any(|other| other.id == id) {
                    self.error(&id_at, format!("zone \"{id}\" is defined twice"));
                    return None;
                }
                Some(id.to_owned())
            });
            let det_at = at.key("detector");
            let channel = self.required(z.detector, &det_at).and_then(|n| {
                let Some(ch) = DetectorChannel::new(n) else {
                    self.error(&det_at, format!("{n} is not a detector channel (1..=64)"));
                    return None;
                };
                if !self.detectors.contains_key(&ch) {
                    self.error(&det_at, format!("channel {ch} is not defined by any [[detector]]"));
                    return None;
                }
                Some(ch)
            });
            if let (Some(id), Some(channel)) = (id, channel) {
                zones.push(CameraZone { id, channel });
            }
        }
        zones
    }
}
