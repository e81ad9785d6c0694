//! Which of a function's queued events may start. Events with the same ordering key run one
//! at a time, in arrival order: while one is ready or running, the next ones of its key wait
//! behind it. Events without a key, or of different keys, are ready at once.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::config::OrderBy;
use crate::event::{Event, attribute};

/// The ordering key of `event` under `order` (a hash: two keys that collide only wait for
/// each other, which keeps the order and costs some parallelism).
pub fn ordering_key(order: &OrderBy, event: &Event) -> Option<u64> {
    let hash = |text: &str| {
        let mut hasher = std::hash::DefaultHasher::new();
        text.hash(&mut hasher);
        hasher.finish()
    };
    match order {
        OrderBy::Subject => Some(hash(&event.subject)),
        OrderBy::Attribute(name) => Some(hash(attribute(event, name).unwrap_or_default())),
        OrderBy::None => None,
    }
}

/// Queued items by ordering key: those ready to start, and those waiting for an earlier item
/// of their key to finish.
pub struct Ordered<T> {
    /// Each key held by a ready or running item, with the items waiting behind it.
    held: HashMap<u64, VecDeque<T>>,
    ready: VecDeque<(Option<u64>, T)>,
}

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self {
            held: HashMap::new(),
            ready: VecDeque::new(),
        }
    }
}

impl<T> Ordered<T> {
    /// Queues an item that just arrived.
    pub fn admit(&mut self, key: Option<u64>, item: T) {
        let Some(key) = key else {
            self.ready.push_back((None, item));
            return;
        };
        match self.held.get_mut(&key) {
            Some(behind) => behind.push_back(item),
            None => {
                self.held.insert(key, VecDeque::new());
                self.ready.push_back((Some(key), item));
            }
        }
    }

    /// The oldest ready item; its key stays held until [`Ordered::finish`].
    pub fn next_ready(&mut self) -> Option<(Option<u64>, T)> {
        self.ready.pop_front()
    }

    /// Takes up to `limit` items waiting behind a ready item of `key` just taken: they may run
    /// right after it, in order, in the same place. The key stays held.
    pub fn take_followers(&mut self, key: Option<u64>, limit: usize) -> Vec<T> {
        let Some(behind) = key.and_then(|key| self.held.get_mut(&key)) else {
            return Vec::new();
        };
        let count = limit.min(behind.len());
        behind.drain(..count).collect()
    }

    /// Returns items of one key taken with [`Ordered::next_ready`] (and its followers) that did
    /// not run, in order: the first goes to the front of the ready ones, the others back to the
    /// front of those waiting behind it.
    pub fn put_back(&mut self, key: Option<u64>, items: Vec<T>) {
        let mut items = items.into_iter();
        let Some(first) = items.next() else { return };
        if let Some(key) = key {
            let behind = self.held.entry(key).or_default();
            for item in items.rev() {
                behind.push_front(item);
            }
        }
        self.ready.push_front((key, first));
    }

    /// An item of `key` finished: the next one of that key, if any, becomes ready.
    pub fn finish(&mut self, key: Option<u64>) {
        let Some(key) = key else { return };
        let Some(behind) = self.held.get_mut(&key) else {
            return;
        };
        match behind.pop_front() {
            Some(next) => self.ready.push_back((Some(key), next)),
            None => {
                self.held.remove(&key);
            }
        }
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Nothing ready, waiting, or holding a key.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_of_one_key_wait_for_each_other_and_keep_their_order() {
        let mut ordered = Ordered::default();
        ordered.admit(Some(1), "a1");
        ordered.admit(Some(1), "a2");
        ordered.admit(Some(2), "b1");
        ordered.admit(Some(1), "a3");
        ordered.admit(None, "free");
        let ready: Vec<_> = std::iter::from_fn(|| ordered.next_ready()).collect();
        assert_eq!(ready, [(Some(1), "a1"), (Some(2), "b1"), (None, "free")]);
        ordered.finish(Some(2));
        assert_eq!(ordered.next_ready(), None, "b has nothing behind it");
        ordered.finish(Some(1));
        assert_eq!(ordered.next_ready(), Some((Some(1), "a2")));
        ordered.finish(Some(1));
        assert_eq!(ordered.next_ready(), Some((Some(1), "a3")));
        assert!(!ordered.is_empty(), "a3 still holds its key");
        ordered.finish(Some(1));
        assert!(ordered.is_empty());
    }

    #[test]
    fn an_item_put_back_goes_first_and_keeps_its_key() {
        let mut ordered = Ordered::default();
        ordered.admit(Some(1), "a1");
        ordered.admit(Some(2), "b1");
        let (key, item) = ordered.next_ready().unwrap();
        ordered.put_back(key, vec![item]);
        ordered.admit(Some(1), "a2");
        assert_eq!(ordered.next_ready(), Some((Some(1), "a1")));
        assert_eq!(ordered.next_ready(), Some((Some(2), "b1")));
        assert_eq!(ordered.next_ready(), None, "a2 waits for a1");
    }

    #[test]
    fn followers_of_a_key_run_after_it_and_unrun_ones_keep_their_place() {
        let mut ordered = Ordered::default();
        for item in ["a1", "a2", "a3", "a4"] {
            ordered.admit(Some(1), item);
        }
        let (key, first) = ordered.next_ready().unwrap();
        assert_eq!(first, "a1");
        assert_eq!(ordered.take_followers(key, 2), ["a2", "a3"]);
        assert_eq!(ordered.take_followers(None, 2), Vec::<&str>::new());
        ordered.admit(Some(1), "a5");
        // a1 and a2 ran, a3 did not.
        ordered.put_back(key, vec!["a3"]);
        assert_eq!(ordered.next_ready(), Some((Some(1), "a3")));
        assert_eq!(ordered.next_ready(), None, "a4 waits for a3");
        ordered.finish(key);
        assert_eq!(ordered.next_ready(), Some((Some(1), "a4")));
        ordered.finish(key);
        assert_eq!(ordered.next_ready(), Some((Some(1), "a5")));
        ordered.finish(key);
        assert!(ordered.is_empty());
    }

    #[test]
    fn keys_come_from_the_subject_an_attribute_or_nothing() {
        use crate::event::{Source, new_event};
        let mut one = new_event(Source::Invoke, "router-1", Vec::new());
        let two = new_event(Source::Invoke, "router-2", Vec::new());
        let again = new_event(Source::Invoke, "router-1", Vec::new());
        let subject = OrderBy::Subject;
        assert_eq!(ordering_key(&subject, &one), ordering_key(&subject, &again));
        assert_ne!(ordering_key(&subject, &one), ordering_key(&subject, &two));
        let by_site = OrderBy::Attribute("site".into());
        assert_eq!(ordering_key(&by_site, &one), ordering_key(&by_site, &two));
        one.attributes.push(("site".into(), "north".into()));
        assert_ne!(ordering_key(&by_site, &one), ordering_key(&by_site, &two));
        assert_eq!(ordering_key(&OrderBy::None, &one), None);
    }
}
