//! movierec: a sequential movie recommender (BERT4Rec in candle) over a MovieLens catalogue.
//!
//! The crate is split by job: [`config`] holds settings, [`catalogue`] the SQLite catalogue and
//! the `dump` that builds it.

pub mod baseline;
pub mod catalogue;
pub mod config;
pub mod http;
pub mod model;
pub mod queue;
pub mod recommend;
pub mod telemetry;
pub mod train;
pub mod worker;
