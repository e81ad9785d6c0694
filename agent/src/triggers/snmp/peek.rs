//! What a datagram is, read from its BER header without decoding it: a notification the
//! receiver takes, an SNMPv3 discovery probe, or a PDU a trap receiver does not answer (get,
//! set, response, report). Anything that cannot be read this far is left to async-snmp,
//! which decodes it properly and reports what is wrong with it.

/// What the relay does with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// For the receiver: a notification, or something only a full decode can judge
    /// (malformed, or an encrypted SNMPv3 message).
    Receiver,
    /// An SNMPv3 message with no authoritative engine ID that asks for a report: the first
    /// step of an inform sender, which the receiver answers with its engine ID.
    Discovery,
    /// A request, response or report PDU: nothing a trap receiver takes.
    NotANotification,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const TRAP_V1: u8 = 0xa4;
const INFORM: u8 = 0xa6;
const TRAP_V2: u8 = 0xa7;
/// GetRequest (0xa0) to Report (0xa8): the context-specific PDU tags of RFC 3416.
const PDU_TAGS: std::ops::RangeInclusive<u8> = 0xa0..=0xa8;
/// msgFlags bits (RFC 3412).
const PRIVACY: u8 = 0x02;
const REPORTABLE: u8 = 0x04;

pub fn classify(datagram: &[u8]) -> Kind {
    read(datagram).unwrap_or(Kind::Receiver)
}

fn read(datagram: &[u8]) -> Option<Kind> {
    let mut message = Ber(Ber(datagram).expect(SEQUENCE)?);
    match message.expect(INTEGER)? {
        [0] => {
            message.expect(OCTET_STRING)?;
            Some(by_pdu(message.tag()?, &[TRAP_V1]))
        }
        [1] => {
            message.expect(OCTET_STRING)?;
            Some(by_pdu(message.tag()?, &[INFORM, TRAP_V2]))
        }
        [3] => read_v3(message),
        _ => None,
    }
}

/// msgGlobalData, msgSecurityParameters (USM), then a plaintext scoped PDU or ciphertext.
fn read_v3(mut message: Ber<'_>) -> Option<Kind> {
    let mut global = Ber(message.expect(SEQUENCE)?);
    global.expect(INTEGER)?;
    global.expect(INTEGER)?;
    let &[flags] = global.expect(OCTET_STRING)? else {
        return None;
    };
    let mut usm = Ber(Ber(message.expect(OCTET_STRING)?).expect(SEQUENCE)?);
    let engine_id = usm.expect(OCTET_STRING)?;
    if flags & PRIVACY != 0 {
        return Some(Kind::Receiver);
    }
    let mut scoped = Ber(message.expect(SEQUENCE)?);
    scoped.expect(OCTET_STRING)?;
    scoped.expect(OCTET_STRING)?;
    let pdu = scoped.tag()?;
    if engine_id.is_empty() && flags & REPORTABLE != 0 && PDU_TAGS.contains(&pdu) {
        return Some(Kind::Discovery);
    }
    Some(by_pdu(pdu, &[INFORM, TRAP_V2]))
}

fn by_pdu(tag: u8, notifications: &[u8]) -> Kind {
    if notifications.contains(&tag) || !PDU_TAGS.contains(&tag) {
        Kind::Receiver
    } else {
        Kind::NotANotification
    }
}

/// The unread rest of a BER encoding.
struct Ber<'a>(&'a [u8]);

impl<'a> Ber<'a> {
    /// The next element's contents, if its tag is `tag`.
    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (found, contents) = self.element()?;
        (found == tag).then_some(contents)
    }

    /// The next element's tag, with its length and contents checked.
    fn tag(&mut self) -> Option<u8> {
        self.element().map(|(tag, _)| tag)
    }

    fn element(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let octets = usize::from(first & 0x7f);
            if octets == 0 || octets > 4 || rest.len() < octets {
                return None;
            }
            let (length, after) = rest.split_at(octets);
            rest = after;
            length
                .iter()
                .fold(0usize, |sum, &octet| sum << 8 | usize::from(octet))
        };
        if rest.len() < length {
            return None;
        }
        let (contents, after) = rest.split_at(length);
        self.0 = after;
        Some((tag, contents))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 or v2c message: version, community "c", then a PDU with the given tag and an
    /// empty body.
    fn community_message(version: u8, pdu: u8) -> Vec<u8> {
        vec![0x30, 0x08, 0x02, 0x01, version, 0x04, 0x01, b'c', pdu, 0x00]
    }

    /// A v3 message with the given msgFlags, authoritative engine ID and (plaintext) PDU tag.
    fn v3_message(flags: u8, engine_id: &[u8], pdu: u8) -> Vec<u8> {
        let element = |tag: u8, contents: &[u8]| {
            let mut out = vec![tag, contents.len() as u8];
            out.extend_from_slice(contents);
            out
        };
        let global = element(
            0x30,
            &[
                element(0x02, &[1]),
                element(0x02, &[0x05, 0xdc]),
                element(0x04, &[flags]),
                element(0x02, &[3]),
            ]
            .concat(),
        );
        let usm = element(
            0x04,
            &element(
                0x30,
                &[
                    element(0x04, engine_id),
                    element(0x02, &[0]),
                    element(0x02, &[0]),
                    element(0x04, b""),
                    element(0x04, b""),
                    element(0x04, b""),
                ]
                .concat(),
            ),
        );
        let data = if flags & PRIVACY != 0 {
            element(0x04, &[0x55; 16])
        } else {
            element(
                0x30,
                &[element(0x04, b""), element(0x04, b""), element(pdu, b"")].concat(),
            )
        };
        element(0x30, &[element(0x02, &[3]), global, usm, data].concat())
    }

    #[test]
    fn notifications_go_to_the_receiver() {
        assert_eq!(classify(&community_message(0, TRAP_V1)), Kind::Receiver);
        assert_eq!(classify(&community_message(1, TRAP_V2)), Kind::Receiver);
        assert_eq!(classify(&community_message(1, INFORM)), Kind::Receiver);
        assert_eq!(
            classify(&v3_message(0x04, b"engine", INFORM)),
            Kind::Receiver
        );
        assert_eq!(
            classify(&v3_message(0x00, b"engine", TRAP_V2)),
            Kind::Receiver
        );
    }

    #[test]
    fn requests_responses_and_reports_are_not_notifications() {
        for pdu in [0xa0, 0xa1, 0xa2, 0xa3, 0xa5, 0xa8] {
            assert_eq!(classify(&community_message(1, pdu)), Kind::NotANotification);
            assert_eq!(
                classify(&v3_message(0x04, b"engine", pdu)),
                Kind::NotANotification
            );
        }
        assert_eq!(
            classify(&community_message(0, TRAP_V2)),
            Kind::NotANotification
        );
        assert_eq!(
            classify(&community_message(1, TRAP_V1)),
            Kind::NotANotification
        );
    }

    #[test]
    fn a_reportable_message_without_an_engine_id_is_discovery() {
        assert_eq!(classify(&v3_message(0x04, b"", 0xa0)), Kind::Discovery);
        assert_eq!(
            classify(&v3_message(0x00, b"", 0xa0)),
            Kind::NotANotification,
            "no report asked for"
        );
    }

    #[test]
    fn what_only_a_full_decode_can_judge_goes_to_the_receiver() {
        assert_eq!(classify(&v3_message(0x07, b"engine", 0xa0)), Kind::Receiver);
        let get = community_message(1, 0xa0);
        for cut in 0..get.len() - 1 {
            assert_eq!(classify(&get[..cut]), Kind::Receiver, "cut at {cut}");
        }
        assert_eq!(classify(&community_message(2, 0xa0)), Kind::Receiver);
        assert_eq!(classify(&[0x30, 0x84, 0x80, 0, 0, 0]), Kind::Receiver);
        assert_eq!(classify(&community_message(1, 0xbf)), Kind::Receiver);
    }
}
