//! movierec: a sequential movie recommender (BERT4Rec in candle) over a MovieLens catalogue.
//!
//! The crate is split by job: [`config`] holds settings, [`catalogue`] the SQLite catalogue and
//! the `dump` that builds it.

pub mod catalogue;
pub mod config;
pub mod recommend;
pub mod telemetry;
