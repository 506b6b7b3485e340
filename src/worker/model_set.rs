//! The set of models a worker serves at once, each behind its own batcher (model thread) with a
//! traffic weight, and the rule that routes a job to one of them:
//! - a job that names a model gets that model (it must be in the set);
//! - otherwise the weighted split picks one: by the job's `user_key` when it has one (a hash,
//!   so one user always sees the same arm on every worker), else by a low-discrepancy sequence,
//!   which keeps the shares within a request or two of the weights at any count.
//!
//! [`LiveModels`] holds the current set behind an atomic pointer: a swap (promotion) is one
//! store, and a job that already holds the old set finishes on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::Batcher;
use crate::queue::Route;
use crate::recommend::Serving;
use crate::registry::specs::ModelSpec;

/// One served model.
#[derive(Clone)]
pub struct Arm {
    /// How requests and `RECSYS_MODELS` name it: its checkpoint directory's name.
    pub name: String,
    /// Its share of the split's traffic, relative to the other arms' (0: by name only).
    pub weight: f64,
    /// The model thread that runs it.
    pub batcher: Batcher,
    /// What it serves, and why.
    pub serving: Serving,
}

/// Why a job cannot be routed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    /// The job named a model this worker does not serve.
    #[error("model `{asked}` is not served; served models: {}", .served.join(", "))]
    NotServed { asked: String, served: Vec<String> },
}

/// Why a set of arms is not a valid model set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelSetError {
    #[error("no model to serve")]
    Empty,
    #[error("model `{0}` is named twice")]
    Duplicate(String),
    #[error("model `{name}` has weight {weight}: weights are finite and not negative")]
    BadWeight { name: String, weight: f64 },
    #[error("every weight is 0: at least one model must take the split's traffic")]
    NoTraffic,
}

/// How the answering model was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChosenBy {
    /// The request named it.
    Request,
    /// The weighted split picked it.
    #[default]
    Split,
}

impl ChosenBy {
    /// The lowercase name used in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Split => "split",
        }
    }
}

/// The models served at once, with their weights.
pub struct ModelSet {
    arms: Vec<Arm>,
    total: f64,
    /// Requests without a user key routed so far (the low-discrepancy sequence's index).
    unkeyed: AtomicU64,
}

impl ModelSet {
    /// Checks the arms: at least one, unique names, finite non-negative weights, not all 0.
    pub fn new(arms: Vec<Arm>) -> Result<Self, ModelSetError> {
        if arms.is_empty() {
            return Err(ModelSetError::Empty);
        }
        for (i, arm) in arms.iter().enumerate() {
            if !arm.weight.is_finite() || arm.weight < 0.0 {
                return Err(ModelSetError::BadWeight {
                    name: arm.name.clone(),
                    weight: arm.weight,
                });
            }
            if arms[..i].iter().any(|a| a.name == arm.name) {
                return Err(ModelSetError::Duplicate(arm.name.clone()));
            }
        }
        let total: f64 = arms.iter().map(|a| a.weight).sum();
        if total <= 0.0 {
            return Err(ModelSetError::NoTraffic);
        }
        Ok(Self {
            arms,
            total,
            unkeyed: AtomicU64::new(0),
        })
    }

    /// The arms, in the order they were given.
    pub fn arms(&self) -> &[Arm] {
        &self.arms
    }

    /// The arm with this name.
    pub fn get(&self, name: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.name == name)
    }

    /// The arm that answers `route`, and how it was chosen.
    pub fn pick(&self, route: &Route) -> Result<(&Arm, ChosenBy), RouteError> {
        if let Some(asked) = &route.model {
            return self
                .get(asked)
                .map(|arm| (arm, ChosenBy::Request))
                .ok_or_else(|| RouteError::NotServed {
                    asked: asked.clone(),
                    served: self.arms.iter().map(|a| a.name.clone()).collect(),
                });
        }
        let point = match &route.user_key {
            Some(key) => key_point(key),
            None => sequence_point(self.unkeyed.fetch_add(1, Ordering::Relaxed)),
        };
        Ok((self.arm_at(point), ChosenBy::Split))
    }

    /// The arm whose share of `[0, 1)` holds `point`.
    fn arm_at(&self, point: f64) -> &Arm {
        let target = point * self.total;
        let mut upto = 0.0;
        let mut last = &self.arms[0];
        for arm in self.arms.iter().filter(|a| a.weight > 0.0) {
            upto += arm.weight;
            last = arm;
            if target < upto {
                return arm;
            }
        }
        last
    }
}

/// A user key's place in `[0, 1)`: the first 8 bytes of its SHA-256, so it is the same on every
/// worker, release and platform.
pub fn key_point(key: &str) -> f64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    unit(u64::from_be_bytes(head))
}

/// The `n`-th point of the golden-ratio sequence in `[0, 1)`: any run of consecutive points
/// covers every share almost exactly in proportion.
fn sequence_point(n: u64) -> f64 {
    // 2^64 / golden ratio, odd.
    unit(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// `x / 2^64`, in `[0, 1)`.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The set served now, and the last promotion that failed; cheap to clone (every clone sees
/// every swap).
#[derive(Clone)]
pub struct LiveModels(Arc<LiveInner>);

struct LiveInner {
    set: ArcSwap<ModelSet>,
    /// Why the last promotion was refused, until the next one succeeds.
    error: Mutex<Option<String>>,
    /// Told on every swap or refusal, so the change is announced at once.
    changed: Notify,
}

impl LiveModels {
    /// Serves `set`.
    pub fn new(set: ModelSet) -> Self {
        Self(Arc::new(LiveInner {
            set: ArcSwap::from_pointee(set),
            error: Mutex::new(None),
            changed: Notify::new(),
        }))
    }

    /// The set now; a job keeps it (and its model threads) until it finishes.
    pub fn current(&self) -> Arc<ModelSet> {
        self.0.set.load_full()
    }

    /// Serves `set` from the next job on, and forgets an earlier refusal.
    pub fn swap(&self, set: ModelSet) {
        self.0.set.store(Arc::new(set));
        *self.error_slot() = None;
        self.0.changed.notify_one();
    }

    /// Records that a promotion was refused (the current set stays).
    pub fn refuse(&self, error: String) {
        *self.error_slot() = Some(error);
        self.0.changed.notify_one();
    }

    /// Why the last promotion was refused, if it was.
    pub fn error(&self) -> Option<String> {
        self.error_slot().clone()
    }

    /// Resolves at the next swap or refusal (or at once if one happened since the last call).
    pub async fn changed(&self) {
        self.0.changed.notified().await;
    }

    fn error_slot(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The slot holds a plain value: a panic elsewhere cannot leave it half-written.
        self.0.error.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ModelSet {
    /// The arm a split with no named model favours most (the first of the heaviest): what the
    /// set reports as "the" model, e.g. for readiness.
    pub fn main_arm(&self) -> &Arm {
        let mut best = &self.arms[0];
        for arm in &self.arms {
            if arm.weight > best.weight {
                best = arm;
            }
        }
        best
    }

    /// Every arm's name and weight.
    pub fn specs(&self) -> Vec<ModelSpec> {
        self.arms
            .iter()
            .map(|a| ModelSpec {
                name: a.name.clone(),
                weight: a.weight,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::{ModelInfo, ModelSource, RecommendRequest, Recommendation};
    use crate::worker::{BatchConfig, Scorer, ScorerError};

    struct Nothing;

    impl Scorer for Nothing {
        fn info(&self) -> ModelInfo {
            ModelInfo::popularity("none", 0)
        }
        fn recommend_batch(
            &self,
            _: &[RecommendRequest],
        ) -> Result<Vec<Recommendation>, ScorerError> {
            Ok(vec![])
        }
    }

    fn arm(name: &str, weight: f64) -> Arm {
        let batcher = Batcher::start(Arc::new(Nothing), BatchConfig::default(), None, name)
            .expect("model thread");
        Arm {
            name: name.into(),
            weight,
            serving: Serving {
                model: batcher.info().clone(),
                source: ModelSource::Checkpoint,
            },
            batcher,
        }
    }

    fn split_route(user_key: Option<String>) -> Route {
        Route {
            model: None,
            user_key,
        }
    }

    #[test]
    fn sets_are_checked() {
        assert_eq!(ModelSet::new(vec![]).err(), Some(ModelSetError::Empty));
        let twice = ModelSet::new(vec![arm("a", 1.0), arm("a", 1.0)]);
        assert_eq!(twice.err(), Some(ModelSetError::Duplicate("a".into())));
        assert!(matches!(
            ModelSet::new(vec![arm("a", f64::NAN)]),
            Err(ModelSetError::BadWeight { .. })
        ));
        assert!(matches!(
            ModelSet::new(vec![arm("a", -0.5), arm("b", 1.0)]),
            Err(ModelSetError::BadWeight { .. })
        ));
        assert_eq!(
            ModelSet::new(vec![arm("a", 0.0)]).err(),
            Some(ModelSetError::NoTraffic)
        );
    }

    #[test]
    fn a_named_model_is_served_or_refused_with_the_served_names() {
        let set = ModelSet::new(vec![arm("a", 1.0), arm("shadow", 0.0)]).unwrap();
        let named = Route {
            model: Some("shadow".into()),
            user_key: None,
        };
        let (arm, how) = set.pick(&named).unwrap();
        assert_eq!((arm.name.as_str(), how), ("shadow", ChosenBy::Request));
        let missing = Route {
            model: Some("b".into()),
            user_key: None,
        };
        let Err(err) = set.pick(&missing) else {
            panic!("a model that is not served was picked");
        };
        let err = err.to_string();
        assert_eq!(err, "model `b` is not served; served models: a, shadow");
        // A weight of 0 takes no split traffic.
        for _ in 0..1000 {
            assert_eq!(set.pick(&split_route(None)).unwrap().0.name, "a");
        }
    }

    /// Counts of arm "a" among `n` routes.
    fn share_of_a(set: &ModelSet, routes: impl Iterator<Item = Route>) -> (usize, usize) {
        let mut a = 0;
        let mut n = 0;
        for route in routes {
            n += 1;
            let (arm, how) = set.pick(&route).unwrap();
            assert_eq!(how, ChosenBy::Split);
            a += usize::from(arm.name == "a");
        }
        (a, n)
    }

    #[test]
    fn the_split_holds_its_weights_with_and_without_user_keys() {
        let set = ModelSet::new(vec![arm("a", 0.9), arm("b", 0.1)]).unwrap();
        // Without keys: within 2 requests of 90 % at every count checked.
        for n in [10, 100, 1000, 10_000] {
            let fresh = ModelSet::new(vec![arm("a", 0.9), arm("b", 0.1)]).unwrap();
            let (a, _) = share_of_a(&fresh, (0..n).map(|_| split_route(None)));
            assert!(a.abs_diff(n * 9 / 10) <= 2, "{a} of {n}");
        }
        // With 10,000 distinct users: within 3 percentage points (a binomial's standard error
        // here is 0.3 points).
        let (a, n) = share_of_a(
            &set,
            (0..10_000).map(|u| split_route(Some(format!("user-{u}")))),
        );
        let share = a as f64 / n as f64;
        assert!((share - 0.9).abs() < 0.03, "{share}");
    }

    #[test]
    fn one_user_always_gets_the_same_arm() {
        let set = ModelSet::new(vec![arm("a", 0.5), arm("b", 0.5)]).unwrap();
        for u in 0..200 {
            let route = split_route(Some(format!("u{u}")));
            let first = set.pick(&route).unwrap().0.name.clone();
            for _ in 0..5 {
                assert_eq!(set.pick(&route).unwrap().0.name, first);
            }
        }
        // The point is SHA-256's first 8 bytes: "abc" hashes to ba7816bf8f01cfea...
        let head: u64 = 0xba78_16bf_8f01_cfea;
        assert_eq!(key_point("abc"), (head >> 11) as f64 / 2f64.powi(53));
    }

    #[test]
    fn a_swap_serves_the_new_set_while_held_sets_stay() {
        let live = LiveModels::new(ModelSet::new(vec![arm("old", 1.0)]).unwrap());
        let held = live.current();
        live.swap(ModelSet::new(vec![arm("new", 1.0)]).unwrap());
        assert_eq!(held.arms()[0].name, "old");
        assert_eq!(live.current().arms()[0].name, "new");
        live.refuse("cannot load x".into());
        assert_eq!(live.error().as_deref(), Some("cannot load x"));
        assert_eq!(live.current().arms()[0].name, "new");
        live.swap(ModelSet::new(vec![arm("a", 0.2), arm("b", 0.8)]).unwrap());
        assert_eq!(live.error(), None);
        assert_eq!(live.current().main_arm().name, "b");
    }
}
