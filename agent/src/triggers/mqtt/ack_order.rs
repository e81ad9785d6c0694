//! Acknowledgements in arrival order. Messages finish out of order (functions differ in speed,
//! failed events are retried), but MQTT requires a client to send PUBACK and PUBREC in the
//! order the PUBLISH packets arrived (3.1.1 and 5.0, section 4.6), and some brokers (rumqttd)
//! drop a connection that does not.

use std::collections::BTreeMap;

/// What a finished message asks of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Acknowledge this QoS 1/2 packet.
    Ack { qos: u8, pkid: u16 },
    /// Leave it unacknowledged (the broker redelivers it on the next connection), but let
    /// the messages behind it be acknowledged.
    Release,
}

/// The order of one connection's QoS 1/2 messages, and the settlements waiting for an
/// earlier message to finish.
#[derive(Debug, Default)]
pub struct AckOrder {
    admitted: u64,
    next: u64,
    finished: BTreeMap<u64, Settle>,
}

impl AckOrder {
    /// The position of a newly arrived QoS 1/2 message.
    pub fn admit(&mut self) -> u64 {
        let position = self.admitted;
        self.admitted += 1;
        position
    }

    /// Records that the message at `position` finished; returns the packets that may now be
    /// acknowledged, in arrival order.
    pub fn finish(&mut self, position: u64, settle: Settle) -> Vec<(u8, u16)> {
        self.finished.insert(position, settle);
        let mut ready = Vec::new();
        while let Some(settle) = self.finished.remove(&self.next) {
            if let Settle::Ack { qos, pkid } = settle {
                ready.push((qos, pkid));
            }
            self.next += 1;
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(pkid: u16) -> Settle {
        Settle::Ack { qos: 1, pkid }
    }

    #[test]
    fn later_messages_wait_for_earlier_ones() {
        let mut order = AckOrder::default();
        let (first, second, third) = (order.admit(), order.admit(), order.admit());
        assert!(order.finish(third, ack(3)).is_empty());
        assert!(order.finish(second, ack(2)).is_empty());
        assert_eq!(order.finish(first, ack(1)), vec![(1, 1), (1, 2), (1, 3)]);
        let fourth = order.admit();
        assert_eq!(order.finish(fourth, ack(4)), vec![(1, 4)]);
    }

    #[test]
    fn a_released_message_is_skipped_not_acknowledged() {
        let mut order = AckOrder::default();
        let (first, second) = (order.admit(), order.admit());
        assert!(order.finish(second, ack(2)).is_empty());
        assert_eq!(order.finish(first, Settle::Release), vec![(1, 2)]);
    }
}
