//! What the detector remembers about one destination and how a window's class moves it:
//! pure logic, tested natively.

use serde::{Deserialize, Serialize};

/// What the function remembers about one destination between windows.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationState {
    /// The confirmed attack, if one is in progress.
    pub attack: Option<String>,
    /// Since when (µs since the epoch) the attack has been confirmed.
    pub since_us: u64,
    /// The class seen in the last windows and how many windows in a row.
    pub streak_class: String,
    pub streak: u32,
}

/// How many windows in a row confirm an attack, and how many normal ones end it.
pub struct Windows {
    pub confirm: u32,
    pub clear: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Started { attack: String },
    Ended { attack: String, since_us: u64 },
}

impl DestinationState {
    /// Folds in one window classified as `class` (received at `now_us`).
    pub fn advance(&mut self, class: &str, now_us: u64, windows: &Windows) -> Option<Transition> {
        if self.streak_class == class {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.streak_class = class.to_owned();
            self.streak = 1;
        }
        match &self.attack {
            None if class != "normal" && self.streak >= windows.confirm => {
                self.attack = Some(class.to_owned());
                self.since_us = now_us;
                Some(Transition::Started {
                    attack: class.to_owned(),
                })
            }
            Some(attack) if class == "normal" && self.streak >= windows.clear => {
                let ended = Transition::Ended {
                    attack: attack.clone(),
                    since_us: self.since_us,
                };
                self.attack = None;
                Some(ended)
            }
            _ => None,
        }
    }
}

/// The index and score of the highest-scoring class.
pub fn strongest(scores: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::MIN);
    for (index, &score) in scores.iter().enumerate() {
        if score > best.1 {
            best = (index, score);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOWS: Windows = Windows {
        confirm: 2,
        clear: 3,
    };

    #[test]
    fn an_attack_starts_after_confirm_windows_and_ends_after_clear_normal_ones() {
        let mut state = DestinationState::default();
        assert_eq!(state.advance("syn_flood", 1, &WINDOWS), None);
        assert_eq!(
            state.advance("syn_flood", 2, &WINDOWS),
            Some(Transition::Started {
                attack: "syn_flood".into()
            })
        );
        assert_eq!(
            state.advance("syn_flood", 3, &WINDOWS),
            None,
            "one start per attack"
        );
        assert_eq!(state.advance("normal", 4, &WINDOWS), None);
        assert_eq!(state.advance("normal", 5, &WINDOWS), None);
        assert_eq!(
            state.advance("normal", 6, &WINDOWS),
            Some(Transition::Ended {
                attack: "syn_flood".into(),
                since_us: 2
            })
        );
        assert_eq!(state.attack, None);
    }

    #[test]
    fn a_single_odd_window_confirms_nothing() {
        let mut state = DestinationState::default();
        for (at, class) in ["normal", "scan", "normal", "udp_flood", "normal"]
            .into_iter()
            .enumerate()
        {
            assert_eq!(state.advance(class, at as u64, &WINDOWS), None);
        }
    }

    #[test]
    fn the_strongest_class_wins() {
        assert_eq!(strongest(&[0.1, 0.7, 0.2]), (1, 0.7));
        assert_eq!(strongest(&[]).0, 0);
    }
}
