//! Live views of published messages for operators (the admin API's topic watch). Each watch
//! has a filter and a bounded queue; every routed message is offered to every watch whose
//! filter matches, and a full queue drops (and counts) the message rather than slow the
//! publisher. With no watch open, the publish path pays one atomic load.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use midge_codec::TopicFilter;
use parking_lot::{Mutex, RwLock};

use crate::broker::Broker;
use crate::message::Message;
use crate::session::Notify;

/// One open watch.
#[derive(Debug)]
pub struct Watch {
    filter: TopicFilter,
    queue: Mutex<VecDeque<Arc<Message>>>,
    capacity: usize,
    dropped: AtomicU64,
    notify: Arc<dyn Notify>,
}

impl Watch {
    /// The messages that arrived since the last call, oldest first.
    pub fn take(&self) -> Vec<Arc<Message>> {
        self.queue.lock().drain(..).collect()
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The filter watched.
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }
}

/// Every open watch.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    count: AtomicUsize,
    list: RwLock<Vec<Arc<Watch>>>,
}

impl Watches {
    /// Offers a routed message to the watches whose filter matches.
    pub(crate) fn offer(&self, msg: &Arc<Message>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        for w in self.list.read().iter() {
            if !w.filter.matches(&msg.topic) {
                continue;
            }
            {
                let mut q = w.queue.lock();
                if q.len() >= w.capacity {
                    w.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                q.push_back(msg.clone());
            }
            w.notify.notify();
        }
    }
}

impl Broker {
    /// Opens a watch on `filter` holding at most `capacity` messages not yet taken; `notify`
    /// is woken when messages arrive. Close it with `unwatch`.
    pub fn watch(
        &self,
        filter: TopicFilter,
        capacity: usize,
        notify: Arc<dyn Notify>,
    ) -> Arc<Watch> {
        let w = Arc::new(Watch {
            filter,
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            notify,
        });
        let mut list = self.watches.list.write();
        list.push(w.clone());
        self.watches.count.store(list.len(), Ordering::Relaxed);
        w
    }

    /// Closes a watch.
    pub fn unwatch(&self, watch: &Arc<Watch>) {
        let mut list = self.watches.list.write();
        list.retain(|w| !Arc::ptr_eq(w, watch));
        self.watches.count.store(list.len(), Ordering::Relaxed);
    }

    /// Number of open watches.
    pub fn watch_count(&self) -> usize {
        self.watches.count.load(Ordering::Relaxed)
    }
}
