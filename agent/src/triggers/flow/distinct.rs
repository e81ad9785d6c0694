//! Bounded-memory counting for one aggregate: sources by traffic (exact up to a bound, then
//! the heaviest kept and a HyperLogLog estimate of how many there were) and destination
//! ports (always exact: there are only 65,536).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use foldhash::quality::FixedState;
use serde::Serialize;

/// An aggregate counts fewer sources than this exactly; at this many it keeps the heaviest
/// half and estimates from then on.
const EXACT_SOURCES: usize = 1024;

/// HyperLogLog precision: 2^12 registers, a standard error near 1.6 %.
const HLL_BITS: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// Ports held in a list before switching to a bitmap of all 65,536.
const LISTED_PORTS: usize = 64;

/// A HyperLogLog sketch (Flajolet et al. 2007, with the small-range correction).
struct HyperLogLog {
    registers: Box<[u8; HLL_REGISTERS]>,
}

/// Every sketch hashes with the same seed, so the same address always lands alike.
const HASH: FixedState = FixedState::with_seed(0x5eed_f10d);

impl HyperLogLog {
    fn new() -> Self {
        Self {
            registers: Box::new([0; HLL_REGISTERS]),
        }
    }

    fn insert(&mut self, address: &IpAddr) {
        let hash = HASH.hash_one(address);
        let index = (hash >> (64 - HLL_BITS)) as usize;
        let rank = ((hash << HLL_BITS) | (1 << (HLL_BITS - 1))).leading_zeros() as u8 + 1;
        let register = &mut self.registers[index];
        *register = (*register).max(rank);
    }

    fn estimate(&self) -> u64 {
        let m = HLL_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let (sum, zeros) = self.registers.iter().fold((0.0, 0u32), |(sum, zeros), &r| {
            (sum + 2f64.powi(-i32::from(r)), zeros + u32::from(r == 0))
        });
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / f64::from(zeros)).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// A source and its traffic, as listed in an aggregate's `top_sources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Talker {
    pub addr: IpAddr,
    pub packets: u64,
    pub bytes: u64,
}

/// How many distinct values were seen, and whether that is an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Distinct {
    pub count: u64,
    pub estimated: bool,
}

/// The sources of one aggregate.
#[derive(Default)]
pub struct Sources {
    traffic: HashMap<IpAddr, Traffic, RandomState>,
    /// Present once the exact bound was passed; every source seen is in it.
    sketch: Option<HyperLogLog>,
}

impl Sources {
    pub fn add(&mut self, source: IpAddr, packets: u64, bytes: u64) {
        if let Some(traffic) = self.traffic.get_mut(&source) {
            traffic.packets += packets;
            traffic.bytes += bytes;
            return;
        }
        if let Some(sketch) = &mut self.sketch {
            sketch.insert(&source);
        }
        self.traffic.insert(source, Traffic { packets, bytes });
        if self.traffic.len() >= EXACT_SOURCES {
            self.keep_heaviest();
        }
    }

    /// Keeps the heaviest sources by bytes, after making sure the sketch has seen them all.
    fn keep_heaviest(&mut self) {
        if self.sketch.is_none() {
            let mut sketch = HyperLogLog::new();
            self.traffic.keys().for_each(|source| sketch.insert(source));
            self.sketch = Some(sketch);
        }
        let mut all: Vec<(IpAddr, Traffic)> = self.traffic.drain().collect();
        let kept = EXACT_SOURCES / 2;
        all.select_nth_unstable_by(kept - 1, |a, b| b.1.bytes.cmp(&a.1.bytes));
        all.truncate(kept);
        self.traffic.extend(all);
    }

    pub fn distinct(&self) -> Distinct {
        match &self.sketch {
            None => Distinct {
                count: self.traffic.len() as u64,
                estimated: false,
            },
            Some(sketch) => Distinct {
                // The sketch can undercount a little; the sources still held are certain.
                count: sketch.estimate().max(self.traffic.len() as u64),
                estimated: true,
            },
        }
    }

    /// The `n` heaviest by bytes, and whether the list is certain (a source dropped to keep
    /// memory bounded could have grown past them).
    pub fn top(&self, n: usize) -> (Vec<Talker>, bool) {
        let mut talkers: Vec<Talker> = self
            .traffic
            .iter()
            .map(|(&addr, traffic)| Talker {
                addr,
                packets: traffic.packets,
                bytes: traffic.bytes,
            })
            .collect();
        talkers.sort_unstable_by(|a, b| b.bytes.cmp(&a.bytes).then(a.addr.cmp(&b.addr)));
        talkers.truncate(n);
        (talkers, self.sketch.is_none())
    }
}

/// The destination ports of one aggregate.
pub enum Ports {
    Listed(Vec<u16>),
    Bitmap { bits: Box<[u64; 1024]>, count: u32 },
}

impl Default for Ports {
    fn default() -> Self {
        Ports::Listed(Vec::new())
    }
}

impl Ports {
    pub fn add(&mut self, port: u16) {
        match self {
            Ports::Listed(ports) => {
                if ports.contains(&port) {
                    return;
                }
                ports.push(port);
                if ports.len() > LISTED_PORTS {
                    let mut bits = Box::new([0u64; 1024]);
                    for &p in ports.iter() {
                        bits[usize::from(p >> 6)] |= 1 << (p & 63);
                    }
                    let count = ports.len() as u32;
                    *self = Ports::Bitmap { bits, count };
                }
            }
            Ports::Bitmap { bits, count } => {
                let word = &mut bits[usize::from(port >> 6)];
                let bit = 1u64 << (port & 63);
                if *word & bit == 0 {
                    *word |= bit;
                    *count += 1;
                }
            }
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Ports::Listed(ports) => ports.len() as u64,
            Ports::Bitmap { count, .. } => u64::from(*count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn address(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn sources_are_exact_below_the_bound() {
        let mut sources = Sources::default();
        for n in 0..(EXACT_SOURCES as u32 - 1) {
            sources.add(address(n), 1, 60);
            sources.add(address(n), 1, 60);
        }
        assert_eq!(
            sources.distinct(),
            Distinct {
                count: EXACT_SOURCES as u64 - 1,
                estimated: false
            }
        );
        assert!(sources.top(3).1);
    }

    #[test]
    fn past_the_bound_the_count_is_an_estimate_within_five_percent_and_heavy_talkers_stay() {
        let mut sources = Sources::default();
        sources.add(address(0), 1_000, 1_000_000);
        let spoofed = 200_000u32;
        for n in 1..=spoofed {
            sources.add(address(n), 1, 60);
        }
        sources.add(address(0), 1_000, 1_000_000);
        let distinct = sources.distinct();
        assert!(distinct.estimated);
        let error = (distinct.count as f64 - f64::from(spoofed + 1)).abs() / f64::from(spoofed);
        assert!(
            error < 0.05,
            "estimate {} is {error:.3} off",
            distinct.count
        );
        let (top, certain) = sources.top(1);
        assert!(!certain);
        assert_eq!(
            top,
            [Talker {
                addr: address(0),
                packets: 2_000,
                bytes: 2_000_000
            }]
        );
    }

    #[test]
    fn ports_stay_exact_past_the_list() {
        let mut ports = Ports::default();
        for port in 0..=u16::MAX {
            ports.add(port);
            ports.add(port);
        }
        assert_eq!(ports.count(), 65_536);
        let mut few = Ports::default();
        [22, 80, 22, 443].into_iter().for_each(|p| few.add(p));
        assert_eq!(few.count(), 3);
    }
}
