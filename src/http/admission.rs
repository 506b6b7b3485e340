//! Load shedding before the queue: `POST /recommend` requests in progress in this process, from
//! enqueue to answer, are bounded (`RECSYS_MAX_PENDING`). One over the bound is answered 429 with
//! `Retry-After` at once, without a Redis call: under a flood, a refusal then costs the API a
//! parse and an answer, and neither Redis nor the API's memory grow with the crowd.
//!
//! The queue's own cap is global and exact; this bound is per process and only a shield. A
//! process cannot have more requests waiting on jobs than the queue holds, so a bound at or
//! above the queue's cap (plus what the workers run) only refuses requests that would have
//! waited for Redis to say no.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// The bound, shared by the process's handlers.
#[derive(Debug, Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    bound: usize,
}

/// A request's place under the bound, given back when the request ends.
#[derive(Debug)]
pub struct Admitted {
    _place: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `bound` requests at once (at least one).
    pub fn new(bound: usize) -> Self {
        let bound = bound.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(bound)),
            bound,
        }
    }

    /// A place for one more request, or the 429 that refuses it.
    pub fn admit(&self) -> Result<Admitted, ApiError> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map(|place| Admitted { _place: place })
            .map_err(|_| ApiError::Busy { bound: self.bound })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_a_finished_request_frees_its_place() {
        let gate = Admission::new(2);
        let first = gate.admit().unwrap();
        let _second = gate.admit().unwrap();
        assert!(matches!(gate.admit(), Err(ApiError::Busy { bound: 2 })));
        drop(first);
        let _third = gate.admit().unwrap();
        assert!(matches!(gate.admit(), Err(ApiError::Busy { bound: 2 })));
        assert!(Admission::new(0).admit().is_ok(), "a bound of 0 is 1");
    }
}
