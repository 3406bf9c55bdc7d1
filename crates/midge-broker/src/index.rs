//! The subscription index: which sessions want a topic. Wildcard-free filters sit in a hash
//! map (one lookup per publish); filters with `+` or `#` sit in a per-level trie. Shared
//! subscriptions (`$share/{group}/{filter}`) are groups of members at the same place.
//!
//! Invariants: a session has at most one entry per filter (a re-subscribe replaces it); a
//! group has at most one entry per session; topics starting with `$` are not matched by a
//! wildcard in the first level ([MQTT-4.7.2-1]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use midge_codec::{SubscriptionId, SubscriptionOptions, TopicFilter};

use crate::session::SessionHandle;

/// One subscription of one session.
#[derive(Debug, Clone)]
pub struct Sub {
    /// The subscriber.
    pub session: Arc<SessionHandle>,
    /// Options with the granted QoS.
    pub options: SubscriptionOptions,
    /// Subscription identifier.
    pub sub_id: Option<SubscriptionId>,
}

/// A shared subscription group at one filter.
#[derive(Debug)]
pub struct Group {
    /// The full `$share/{group}/{filter}` string.
    pub key: Arc<str>,
    /// Members.
    pub members: Vec<Sub>,
    next: AtomicUsize,
}

impl Group {
    /// Picks the next member round robin, preferring members that are online.
    pub fn pick(&self) -> Option<&Sub> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.members[(start + i) % n])
            .find(|s| s.session.is_online())
            .or_else(|| self.members.get(start % n))
    }
}

#[derive(Debug, Default)]
struct Bucket {
    subs: Vec<Sub>,
    groups: Vec<Group>,
}

impl Bucket {
    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.groups.is_empty()
    }

    fn insert(&mut self, filter: &TopicFilter, sub: Sub) -> bool {
        let uid = sub.session.uid;
        let list = if filter.is_shared() {
            let idx = match self.groups.iter().position(|g| &*g.key == filter.as_str()) {
                Some(i) => i,
                None => {
                    self.groups.push(Group {
                        key: Arc::from(filter.as_str()),
                        members: Vec::new(),
                        next: AtomicUsize::new(0),
                    });
                    self.groups.len() - 1
                }
            };
            &mut self.groups[idx].members
        } else {
            &mut self.subs
        };
        match list.iter_mut().find(|s| s.session.uid == uid) {
            Some(existing) => {
                *existing = sub;
                false
            }
            None => {
                list.push(sub);
                true
            }
        }
    }

    fn remove(&mut self, filter: &TopicFilter, uid: u64) -> bool {
        if filter.is_shared() {
            let Some(gi) = self.groups.iter().position(|g| &*g.key == filter.as_str()) else {
                return false;
            };
            let g = &mut self.groups[gi];
            let before = g.members.len();
            g.members.retain(|s| s.session.uid != uid);
            let removed = g.members.len() != before;
            if g.members.is_empty() {
                self.groups.swap_remove(gi);
            }
            removed
        } else {
            let before = self.subs.len();
            self.subs.retain(|s| s.session.uid != uid);
            self.subs.len() != before
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Filters ending in `#` at this level.
    hash: Bucket,
    /// Filters ending exactly here.
    here: Bucket,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
}

/// The index.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    exact: HashMap<Box<str>, Bucket>,
    root: Node,
    count: usize,
}

/// What a topic matched.
#[derive(Debug, Default)]
pub struct Matches<'a> {
    /// Ordinary subscriptions.
    pub subs: Vec<&'a Sub>,
    /// Shared groups.
    pub groups: Vec<&'a Group>,
}

impl SubscriptionIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subscriptions (shared members included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds or replaces the subscription of `sub.session` to `filter`. Returns true if new.
    pub fn insert(&mut self, filter: &TopicFilter, sub: Sub) -> bool {
        let new = if filter.has_wildcards() {
            let mut node = &mut self.root;
            let mut levels = filter.filter().split('/').peekable();
            let mut bucket = None;
            while let Some(level) = levels.next() {
                if level == "#" {
                    bucket = Some(&mut node.hash);
                    break;
                }
                node = if level == "+" {
                    node.plus.get_or_insert_with(Box::default)
                } else {
                    node.children.entry(Box::from(level)).or_default()
                };
                if levels.peek().is_none() {
                    bucket = Some(&mut node.here);
                }
            }
            match bucket {
                Some(b) => b.insert(filter, sub),
                None => false,
            }
        } else {
            self.exact
                .entry(Box::from(filter.filter()))
                .or_default()
                .insert(filter, sub)
        };
        if new {
            self.count += 1;
        }
        new
    }

    /// Removes the subscription of session `uid` to `filter`. Returns true if it existed.
    pub fn remove(&mut self, filter: &TopicFilter, uid: u64) -> bool {
        let removed = if filter.has_wildcards() {
            let levels: Vec<&str> = filter.filter().split('/').collect();
            remove_in(&mut self.root, &levels, filter, uid)
        } else {
            let key = filter.filter();
            match self.exact.get_mut(key) {
                Some(b) => {
                    let r = b.remove(filter, uid);
                    if b.is_empty() {
                        self.exact.remove(key);
                    }
                    r
                }
                None => false,
            }
        };
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// The shared group with this full `$share/...` key.
    pub fn group(&self, filter: &TopicFilter) -> Option<&Group> {
        let bucket = if filter.has_wildcards() {
            let mut node = &self.root;
            let mut levels = filter.filter().split('/').peekable();
            let mut found = None;
            while let Some(level) = levels.next() {
                if level == "#" {
                    found = Some(&node.hash);
                    break;
                }
                node = if level == "+" {
                    node.plus.as_deref()?
                } else {
                    node.children.get(level)?
                };
                if levels.peek().is_none() {
                    found = Some(&node.here);
                }
            }
            found?
        } else {
            self.exact.get(filter.filter())?
        };
        bucket.groups.iter().find(|g| &*g.key == filter.as_str())
    }

    /// Every subscription and group matching `topic`.
    pub fn matches<'a>(&'a self, topic: &str, out: &mut Matches<'a>) {
        if let Some(b) = self.exact.get(topic) {
            collect(b, out);
        }
        if self.root.is_empty() {
            return;
        }
        let dollar = topic.starts_with('$');
        let levels: Vec<&str> = topic.split('/').collect();
        walk(&self.root, &levels, dollar, out);
    }
}

fn collect<'a>(b: &'a Bucket, out: &mut Matches<'a>) {
    out.subs.extend(b.subs.iter());
    out.groups.extend(b.groups.iter());
}

fn walk<'a>(node: &'a Node, levels: &[&str], skip_wildcards: bool, out: &mut Matches<'a>) {
    if !skip_wildcards {
        collect(&node.hash, out);
    }
    let Some((first, rest)) = levels.split_first() else {
        collect(&node.here, out);
        return;
    };
    if let Some(child) = node.children.get(*first) {
        walk(child, rest, false, out);
    }
    if !skip_wildcards {
        if let Some(plus) = &node.plus {
            walk(plus, rest, false, out);
        }
    }
}

fn remove_in(node: &mut Node, levels: &[&str], filter: &TopicFilter, uid: u64) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return false;
    };
    if *first == "#" {
        return node.hash.remove(filter, uid);
    }
    let removed;
    if *first == "+" {
        let Some(plus) = node.plus.as_deref_mut() else {
            return false;
        };
        removed = if rest.is_empty() {
            plus.here.remove(filter, uid)
        } else {
            remove_in(plus, rest, filter, uid)
        };
        if plus.is_empty() {
            node.plus = None;
        }
    } else {
        let Some(child) = node.children.get_mut(*first) else {
            return false;
        };
        removed = if rest.is_empty() {
            child.here.remove(filter, uid)
        } else {
            remove_in(child, rest, filter, uid)
        };
        if child.is_empty() {
            node.children.remove(*first);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueFullPolicy;
    use crate::session::{QueueLimits, SessionState};
    use midge_codec::{ClientId, ProtocolVersion, TopicName};

    fn session(uid: u64) -> Arc<SessionHandle> {
        let limits = QueueLimits {
            max_inflight: 1,
            max_messages: 1,
            max_bytes: 1,
            policy: QueueFullPolicy::DropNewest,
            queue_qos0_offline: false,
        };
        Arc::new(SessionHandle::new(
            uid,
            ClientId::try_from(format!("c{uid}")).expect("valid"),
            SessionState::new(ProtocolVersion::V5, 0, limits),
        ))
    }

    fn sub(s: &Arc<SessionHandle>) -> Sub {
        Sub {
            session: s.clone(),
            options: SubscriptionOptions::default(),
            sub_id: None,
        }
    }

    fn f(s: &str) -> TopicFilter {
        TopicFilter::try_from(s).expect("valid filter")
    }

    fn matched(idx: &SubscriptionIndex, topic: &str) -> Vec<u64> {
        let t = TopicName::try_from(topic).expect("valid topic");
        let mut m = Matches::default();
        idx.matches(t.as_str(), &mut m);
        let mut v: Vec<u64> = m.subs.iter().map(|s| s.session.uid).collect();
        v.extend(
            m.groups
                .iter()
                .flat_map(|g| g.members.iter().map(|s| s.session.uid)),
        );
        v.sort_unstable();
        v
    }

    #[test]
    fn index_agrees_with_the_matching_rule() {
        let filters = [
            "a", "a/b", "a/+", "+/b", "#", "a/#", "+/+", "$SYS/#", "+", "a/b/c", "a/+/c", "/",
            "+/#", "$SYS/+",
        ];
        let topics = [
            "a", "a/b", "b/b", "a/b/c", "$SYS/x", "$SYS", "/", "a/", "x/y/z", "a/x/c",
        ];
        let mut idx = SubscriptionIndex::new();
        let sessions: Vec<_> = (0..filters.len() as u64).map(session).collect();
        for (i, fl) in filters.iter().enumerate() {
            assert!(idx.insert(&f(fl), sub(&sessions[i])));
        }
        for t in topics {
            let topic = TopicName::try_from(t).expect("valid");
            let mut expected: Vec<u64> = filters
                .iter()
                .enumerate()
                .filter(|(_, fl)| f(fl).matches(&topic))
                .map(|(i, _)| i as u64)
                .collect();
            expected.sort_unstable();
            assert_eq!(matched(&idx, t), expected, "topic {t}");
        }
    }

    #[test]
    fn resubscribe_replaces_and_remove_prunes() {
        let mut idx = SubscriptionIndex::new();
        let s = session(1);
        assert!(idx.insert(&f("a/+/c"), sub(&s)));
        assert!(!idx.insert(&f("a/+/c"), sub(&s)));
        assert_eq!(idx.len(), 1);
        assert!(idx.remove(&f("a/+/c"), 1));
        assert!(!idx.remove(&f("a/+/c"), 1));
        assert!(idx.root.is_empty());
        assert!(idx.insert(&f("x"), sub(&s)));
        assert!(idx.remove(&f("x"), 1));
        assert!(idx.exact.is_empty());
    }

    #[test]
    fn shared_groups_round_robin() {
        let mut idx = SubscriptionIndex::new();
        let a = session(1);
        let b = session(2);
        idx.insert(&f("$share/g/t/+"), sub(&a));
        idx.insert(&f("$share/g/t/+"), sub(&b));
        let mut m = Matches::default();
        idx.matches("t/x", &mut m);
        assert_eq!(m.groups.len(), 1);
        let picks: Vec<u64> = (0..4)
            .map(|_| m.groups[0].pick().expect("member").session.uid)
            .collect();
        assert_eq!(picks, vec![1, 2, 1, 2]);
        assert!(idx.group(&f("$share/g/t/+")).is_some());
        assert!(idx.remove(&f("$share/g/t/+"), 1));
        assert!(idx.remove(&f("$share/g/t/+"), 2));
        assert!(idx.group(&f("$share/g/t/+")).is_none());
    }
}
