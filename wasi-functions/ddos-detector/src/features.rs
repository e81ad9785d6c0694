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

/// The parts of a fogd flow trigger's window aggregate (`flow = { window, key =
/// ["dst_addr"] }`, the README's flow window schema) the model needs.
#[derive(Debug, Deserialize)]
pub struct CollectorWindow {
    window: Times,
    key: Key,
    packets: f64,
    bytes: f64,
    flows: f64,
    tcp: Tcp,
    udp_packets: f64,
    distinct_sources: Count,
    distinct_dst_ports: f64,
    #[serde(default)]
    top_sources: Vec<Talker>,
}

#[derive(Debug, Deserialize)]
struct Times {
    seconds: f64,
}

#[derive(Debug, Deserialize)]
struct Key {
    dst_addr: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Tcp {
    syn_without_ack_packets: f64,
}

#[derive(Debug, Deserialize)]
struct Count {
    count: f64,
}

#[derive(Debug, Deserialize)]
struct Talker {
    addr: String,
}

impl TryFrom<CollectorWindow> for FlowWindow {
    type Error = String;

    fn try_from(window: CollectorWindow) -> Result<Self, String> {
        let dst = window
            .key
            .dst_addr
            .ok_or("the flow window has no dst_addr key: give the trigger key = [\"dst_addr\"]")?;
        Ok(FlowWindow {
            dst,
            window_s: window.window.seconds,
            packets: window.packets,
            bytes: window.bytes,
            syn: window.tcp.syn_without_ack_packets,
            udp: window.udp_packets,
            sources: window.distinct_sources.count,
            dst_ports: window.distinct_dst_ports,
            new_flows: window.flows,
            top_source: window.top_sources.into_iter().next().map(|t| t.addr),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collector_window_becomes_the_models_window() {
        let payload = r#"{"window": {"start": "", "end": "", "seconds": 0.5},
            "key": {"dst_addr": "192.0.2.80"}, "overflow": false, "flows": 900,
            "packets": 1000, "bytes": 40000,
            "tcp": {"syn": 900, "syn_without_ack": 900, "syn_without_ack_packets": 950, "rst": 0},
            "udp_packets": 10, "distinct_sources": {"count": 880, "estimated": false},
            "distinct_dst_ports": 1, "protocols": {},
            "top_sources": [{"addr": "198.18.0.1", "packets": 2, "bytes": 80}],
            "top_sources_exact": true, "sampled": false}"#;
        let collector: CollectorWindow = serde_json::from_str(payload).unwrap();
        let window = FlowWindow::try_from(collector).unwrap();
        assert_eq!(window.dst, "192.0.2.80");
        assert_eq!(window.packets_per_s(), 2000.0);
        assert_eq!(
            (window.syn, window.udp, window.sources),
            (950.0, 10.0, 880.0)
        );
        assert_eq!(window.new_flows, 900.0);
        assert_eq!(window.top_source.as_deref(), Some("198.18.0.1"));

        let unkeyed = payload.replace(r#""dst_addr": "192.0.2.80""#, "");
        let collector: CollectorWindow = serde_json::from_str(&unkeyed).unwrap();
        assert!(
            FlowWindow::try_from(collector)
                .unwrap_err()
                .contains("dst_addr")
        );
    }
}
