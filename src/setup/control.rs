//! Promotions, on both sides:
//! - [`LocalControl`]: the models run in this process (`serve --embedded`): a promotion loads
//!   the new set here and swaps it in;
//! - [`RedisControl`]: the models run on Redis workers: a promotion checks that the model loads,
//!   stores the new set in Redis and announces it; [`follow_promotions`] is the workers' side,
//!   which loads it and swaps it in.
//!
//! Either way a set that does not load is not served: the old one stays live and the error is
//! kept where `/models` and the logs show it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Mutex, watch};

use super::SetupError;
use super::live::ModelLoader;
use super::model::load_checkpoint;
use crate::queue::{LiveSetStore, QueueError, WorkerRegistry};
use crate::registry::control::{LiveView, ModelControl, PromoteError};
use crate::registry::specs::{self, ModelSpec};
use crate::worker::LiveModels;

/// The full chain of an error, for logs and `/models`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Loads `specs` next to the live set and swaps it in; on an error the live set stays and the
/// error is recorded.
async fn load_and_swap(
    live: &LiveModels,
    loader: &Arc<ModelLoader>,
    specs: Vec<ModelSpec>,
) -> Result<(), String> {
    let current = live.current();
    let task_loader = Arc::clone(loader);
    let task_current = Arc::clone(&current);
    let task_specs = specs.clone();
    let loaded =
        tokio::task::spawn_blocking(move || task_loader.load(&task_specs, Some(&task_current)))
            .await;
    match loaded {
        Ok(Ok(set)) => {
            live.swap(set);
            tracing::info!(models = %specs::Display(&specs), "promoted: serving the new set");
            Ok(())
        }
        Ok(Err(e)) => {
            let text = format!("cannot serve {}: {}", specs::Display(&specs), chain(&e));
            tracing::error!(error = %text, "promotion refused; the live models stay");
            live.refuse(text.clone());
            Err(text)
        }
        Err(e) => {
            let text = format!("loading {} stopped: {e}", specs::Display(&specs));
            tracing::error!(error = %text, "promotion refused; the live models stay");
            live.refuse(text.clone());
            Err(text)
        }
    }
}

/// Refuses a name that is neither live nor a checkpoint under the root.
fn check_known(loader: &ModelLoader, live: &[ModelSpec], name: &str) -> Result<(), PromoteError> {
    if live.iter().any(|s| s.name == name) {
        return Ok(());
    }
    match loader.checkpoint_dir(name) {
        Ok(_) => Ok(()),
        Err(e @ SetupError::UnknownModel { .. }) => Err(PromoteError::Unknown(e.to_string())),
        Err(e) => Err(PromoteError::Load(chain(&e))),
    }
}

/// The models of this process.
pub struct LocalControl {
    live: LiveModels,
    loader: Arc<ModelLoader>,
    /// One promotion at a time.
    promoting: Mutex<()>,
}

impl LocalControl {
    /// Control over `live`, loading new models with `loader`.
    pub fn new(live: LiveModels, loader: Arc<ModelLoader>) -> Self {
        Self {
            live,
            loader,
            promoting: Mutex::new(()),
        }
    }
}

impl ModelControl for LocalControl {
    fn live(&self) -> BoxFuture<'_, Result<LiveView, QueueError>> {
        let view = LiveView {
            models: self.live.current().specs(),
            errors: self.live.error().into_iter().collect(),
        };
        async move { Ok(view) }.boxed()
    }

    fn promote(
        &self,
        name: String,
        weight: f64,
    ) -> BoxFuture<'_, Result<Vec<ModelSpec>, PromoteError>> {
        async move {
            let _one = self.promoting.lock().await;
            let current = self.live.current().specs();
            let set = specs::promoted(&current, &name, weight)?;
            check_known(&self.loader, &current, &name)?;
            load_and_swap(&self.live, &self.loader, set.clone())
                .await
                .map_err(PromoteError::Load)?;
            Ok(set)
        }
        .boxed()
    }
}

/// The models of the Redis workers.
pub struct RedisControl {
    store: LiveSetStore,
    workers: WorkerRegistry,
    loader: Arc<ModelLoader>,
    promoting: Mutex<()>,
}

impl RedisControl {
    /// Control over the workers of `store`'s queue; `loader` checks that a model loads before
    /// it is announced.
    pub fn new(store: LiveSetStore, workers: WorkerRegistry, loader: Arc<ModelLoader>) -> Self {
        Self {
            store,
            workers,
            loader,
            promoting: Mutex::new(()),
        }
    }

    /// What the workers serve now: the first live worker's set (a stored set that the workers
    /// refused is not what serves), else the stored one when no worker is up.
    async fn current(&self) -> Result<Vec<ModelSpec>, QueueError> {
        let serving = self
            .workers
            .live()
            .await?
            .into_iter()
            .map(|w| w.models)
            .find(|m| !m.is_empty());
        match serving {
            Some(set) => Ok(set),
            None => Ok(self.store.read().await?.unwrap_or_default()),
        }
    }
}

impl ModelControl for RedisControl {
    fn live(&self) -> BoxFuture<'_, Result<LiveView, QueueError>> {
        async move {
            let mut view = LiveView::default();
            for worker in self.workers.live().await? {
                for spec in worker.models {
                    if !view.models.iter().any(|m| m.name == spec.name) {
                        view.models.push(spec);
                    }
                }
                if let Some(e) = worker.model_error {
                    view.errors.push(format!("worker {}: {e}", worker.name));
                }
            }
            Ok(view)
        }
        .boxed()
    }

    fn promote(
        &self,
        name: String,
        weight: f64,
    ) -> BoxFuture<'_, Result<Vec<ModelSpec>, PromoteError>> {
        async move {
            let _one = self.promoting.lock().await;
            let current = self.current().await?;
            let set = specs::promoted(&current, &name, weight)?;
            if current.iter().any(|s| s.name == name) {
                // Already served: only its weight changes.
                self.store.publish(&set).await?;
                return Ok(set);
            }
            check_known(&self.loader, &current, &name)?;
            // A model that does not load here would not load on the workers either: refuse it
            // before any worker tries.
            let loader = Arc::clone(&self.loader);
            let checked = tokio::task::spawn_blocking(move || {
                let dir = loader.checkpoint_dir(&name)?;
                load_checkpoint(&dir, loader.precision()).map(drop)
            })
            .await
            .map_err(|e| PromoteError::Load(format!("loading stopped: {e}")))?;
            checked.map_err(|e: SetupError| PromoteError::Load(chain(&e)))?;
            self.store.publish(&set).await?;
            tracing::info!(models = %specs::Display(&set), "promoted: announced to the workers");
            Ok(set)
        }
        .boxed()
    }
}

/// The Redis worker's side of promotions: serves the promoted set whenever it changes (and on
/// start, when one was promoted before), until `shutdown`.
pub async fn follow_promotions(
    store: LiveSetStore,
    live: LiveModels,
    loader: Arc<ModelLoader>,
    mut shutdown: watch::Receiver<bool>,
) {
    // A set that failed to load is not tried again until another is promoted.
    let mut refused: Option<Vec<ModelSpec>> = None;
    loop {
        let subscribed =
            match tokio::time::timeout(Duration::from_secs(2), store.client().get_async_pubsub())
                .await
            {
                Ok(Ok(mut p)) => p.subscribe(store.channel()).await.ok().map(|()| p),
                _ => None,
            };
        let Some(pubsub) = subscribed else {
            if tokio::time::timeout(Duration::from_secs(1), shutdown.wait_for(|s| *s))
                .await
                .is_ok()
            {
                return;
            }
            continue;
        };
        // Subscribed first, then read: a promotion in between is seen either way.
        apply_promoted(&store, &live, &loader, &mut refused).await;
        let mut messages = pubsub.into_on_message();
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(_) => apply_promoted(&store, &live, &loader, &mut refused).await,
                    None => break,
                },
                // Mapped to (): the watch's guard must not live across the await above.
                () = async { drop(shutdown.wait_for(|s| *s).await) } => return,
            }
        }
    }
}

/// Serves the promoted set if it differs from the live one.
async fn apply_promoted(
    store: &LiveSetStore,
    live: &LiveModels,
    loader: &Arc<ModelLoader>,
    refused: &mut Option<Vec<ModelSpec>>,
) {
    let set = match store.read().await {
        Ok(Some(set)) => set,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the promoted models; the live ones stay");
            return;
        }
    };
    if set == live.current().specs() || refused.as_ref() == Some(&set) {
        return;
    }
    match load_and_swap(live, loader, set.clone()).await {
        Ok(()) => *refused = None,
        Err(_) => *refused = Some(set),
    }
}
