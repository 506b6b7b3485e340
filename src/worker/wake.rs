//! Waking the apalis worker loop without polling.
//!
//! apalis fetches from Redis when its loop is polled, and parks when a fetch comes back empty.
//! A wake-up that arrives while a fetch is in flight is used up by that fetch, which may have
//! run in Redis before the announced job was pushed: the job would then wait for some later
//! wake-up. The same holds for a finished job's record, which apalis writes only when its loop
//! next runs from rest. [`WakeStrategy`] closes that gap: after each wake-up it makes sure the
//! worker sends a command to Redis that *starts after* the wake-up (a fetch, or the write of
//! the finished jobs' records, which apalis always does before its next fetch). It knows what
//! the worker sends through [`CountedConnection`], the connection the worker's storage uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures::StreamExt;
use futures::channel::mpsc;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// What one connection has sent: commands started, and those not yet answered.
#[derive(Debug, Default)]
pub(super) struct CommandCounts {
    started: AtomicU64,
    in_flight: AtomicU64,
}

impl CommandCounts {
    fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Counts a command in flight until dropped (answered, failed or cancelled).
struct InFlight(Arc<CommandCounts>);

impl InFlight {
    fn start(counts: &Arc<CommandCounts>) -> Self {
        counts.in_flight.fetch_add(1, Ordering::SeqCst);
        counts.started.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(counts))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A Redis connection that counts the commands sent through it.
#[derive(Clone)]
pub(super) struct CountedConnection {
    inner: ConnectionManager,
    counts: Arc<CommandCounts>,
}

impl CountedConnection {
    pub(super) fn new(inner: ConnectionManager) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    pub(super) fn counts(&self) -> Arc<CommandCounts> {
        Arc::clone(&self.counts)
    }
}

impl ConnectionLike for CountedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let guard = InFlight::start(&self.counts);
        let answer = self.inner.req_packed_command(cmd);
        Box::pin(async move {
            let _guard = guard;
            answer.await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let guard = InFlight::start(&self.counts);
        let answer = self.inner.req_packed_commands(pipeline, offset, count);
        Box::pin(async move {
            let _guard = guard;
            answer.await
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// apalis' poll strategy over a stream of wake-ups (new jobs, finished jobs, the safety net).
pub(super) struct WakeStrategy {
    wakeups: mpsc::Receiver<()>,
    counts: Arc<CommandCounts>,
    /// Commands started when the last unanswered wake-up was taken: one must start after it.
    owed: Option<u64>,
    waker: Option<Waker>,
}

impl WakeStrategy {
    pub(super) fn new(wakeups: mpsc::Receiver<()>, counts: Arc<CommandCounts>) -> Self {
        Self {
            wakeups,
            counts,
            owed: None,
            waker: None,
        }
    }
}

impl PollStrategy for WakeStrategy {
    /// apalis ignores what this returns and polls it only to register its waker; a stream polled
    /// for a single ready item registers none, so the channel is drained until it is empty,
    /// which always leaves the waker registered.
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        if self.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
        let mut woken = false;
        loop {
            match self.wakeups.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => woken = true,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        if woken {
            self.owed = Some(self.counts.started());
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }

    /// Runs after apalis polled its storage. Once a command has started since the wake-up, the
    /// wake-up is served. Otherwise, if nothing is in flight, apalis is at rest (it parked after
    /// an empty fetch that may have run before the job was pushed): wake it to fetch again. If
    /// a command from before is in flight, its answer wakes the worker and this runs again.
    fn on_poll(&mut self, _: &PollSnapshot) {
        let Some(mark) = self.owed else { return };
        if self.counts.started() > mark {
            self.owed = None;
        } else if self.counts.in_flight() == 0
            && let Some(waker) = &self.waker
        {
            waker.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::{ArcWake, waker};

    /// Counts how often the worker would be woken.
    #[derive(Default)]
    struct Wakes(AtomicU64);

    impl ArcWake for Wakes {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_up_during_an_earlier_fetch_is_not_used_up_by_it() {
        let counts = Arc::new(CommandCounts::default());
        let (mut tx, rx) = mpsc::channel(1);
        let mut strategy = WakeStrategy::new(rx, Arc::clone(&counts));
        let wakes = Arc::new(Wakes::default());
        let worker = waker(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&worker);
        let snapshot = PollSnapshot::new();

        // A fetch is in flight when a job is announced.
        let fetch = InFlight::start(&counts);
        tx.try_send(()).unwrap();
        assert_eq!(
            strategy.poll_drive(&mut cx, &snapshot),
            Poll::Ready(Some(()))
        );
        strategy.on_poll(&snapshot);
        // The fetch's answer will wake the worker: nothing to do yet.
        let before = wakes.0.load(Ordering::SeqCst);
        assert_eq!(before, 0);

        // It answers empty (it ran before the push) and apalis parks: the worker is woken again.
        drop(fetch);
        assert_eq!(strategy.poll_drive(&mut cx, &snapshot), Poll::Pending);
        strategy.on_poll(&snapshot);
        assert_eq!(wakes.0.load(Ordering::SeqCst), before + 1);

        // A fetch that starts after the announcement serves it: no more wake-ups.
        let second = InFlight::start(&counts);
        assert_eq!(strategy.poll_drive(&mut cx, &snapshot), Poll::Pending);
        strategy.on_poll(&snapshot);
        drop(second);
        strategy.on_poll(&snapshot);
        assert_eq!(wakes.0.load(Ordering::SeqCst), before + 1);
    }

    #[test]
    fn with_no_wake_up_the_strategy_never_wakes_the_worker() {
        let counts = Arc::new(CommandCounts::default());
        let (_tx, rx) = mpsc::channel::<()>(1);
        let mut strategy = WakeStrategy::new(rx, counts);
        let wakes = Arc::new(Wakes::default());
        let worker = waker(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&worker);
        let snapshot = PollSnapshot::new();
        for _ in 0..3 {
            assert_eq!(strategy.poll_drive(&mut cx, &snapshot), Poll::Pending);
            strategy.on_poll(&snapshot);
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    }
}
