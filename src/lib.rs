//! movierec: a sequential movie recommender (BERT4Rec and SASRec in candle) over a MovieLens
//! catalogue, served over HTTP through a job queue.
//!
//! One module per job: [`config`] holds the settings groups; [`catalogue`] the SQLite catalogue,
//! every SQL statement and the `dump` that builds it; [`model`] the networks, their kernels and
//! checkpoints; [`baseline`] popularity, EASE, the transition model and blends;
//! [`registry`] the checkpoints as named models; [`train`] training and evaluation;
//! [`recommend`] requests, answers and what a process serves; [`queue`] the job queues;
//! [`worker`] the batcher and the queue consumers; [`http`] the API; [`setup`] what `serve`,
//! `worker` and `demo` share to build a serving process from settings; [`telemetry`] logging.

pub mod baseline;
pub mod catalogue;
pub mod config;
pub mod http;
pub mod model;
pub mod queue;
pub mod recommend;
pub mod registry;
pub mod setup;
pub mod telemetry;
pub mod train;
pub mod worker;
