//! One flow-telemetry window for one destination, and the scaling the flow-anomaly model was
//! trained with (models/flow-anomaly/features.py `scale`; the two must stay in step).

use serde::Deserialize;

/// Counters for one destination over one window, as a flow exporter or the gateway's own
/// packet counters report them.
#[derive(Debug, Clone, Deserialize)]
pub struct FlowWindow {
    /// The destination address the window is about.
    pub dst: String,
    /// Window length in seconds.
    #[serde(default = "one_second")]
    pub window_s: f64,
    pub packets: f64,
    pub bytes: f64,
    /// TCP packets with SYN set and ACK clear.
    #[serde(default)]
    pub syn: f64,
    #[serde(default)]
    pub udp: f64,
    /// Distinct source addresses seen.
    #[serde(default)]
    pub sources: f64,
    /// Distinct destination ports hit.
    #[serde(default)]
    pub dst_ports: f64,
    /// Flows first seen in the window.
    #[serde(default)]
    pub new_flows: f64,
    /// The busiest source, if the exporter knows it (used in block rules).
    #[serde(default)]
    pub top_source: Option<String>,
}

fn one_second() -> f64 {
    1.0
}

impl FlowWindow {
    pub fn validate(&self) -> Result<(), String> {
        let counters = [
            self.packets,
            self.bytes,
            self.syn,
            self.udp,
            self.sources,
            self.dst_ports,
            self.new_flows,
        ];
        let positive_window = self.window_s.is_finite() && self.window_s > 0.0;
        if !positive_window || counters.iter().any(|c| !c.is_finite() || *c < 0.0) {
            return Err("window_s must be positive and counters non-negative numbers".into());
        }
        if self.dst.is_empty() {
            return Err("dst is empty".into());
        }
        Ok(())
    }

    pub fn packets_per_s(&self) -> f64 {
        self.packets / self.window_s
    }

    /// The model's eight inputs.
    pub fn features(&self) -> [f32; 8] {
        let per_s = |v: f64| v / self.window_s;
        let share = |v: f64| {
            if self.packets > 0.0 {
                (v / self.packets).min(1.0)
            } else {
                0.0
            }
        };
        let mean_size = if self.packets > 0.0 {
            self.bytes / self.packets
        } else {
            0.0
        };
        [
            (per_s(self.packets).ln_1p() / 12.0) as f32,
            (per_s(self.bytes).ln_1p() / 20.0) as f32,
            share(self.syn) as f32,
            share(self.udp) as f32,
            (self.sources.ln_1p() / 12.0) as f32,
            (self.dst_ports.ln_1p() / 12.0) as f32,
            (mean_size / 1500.0) as f32,
            (per_s(self.new_flows).ln_1p() / 12.0) as f32,
        ]
    }
}
