//! One module per subcommand: its clap arguments and the call into the library.

pub mod bench;
pub mod bench_api;
pub mod bench_catalogue;
pub mod bench_model;
pub mod child;
pub mod cpu_peak;
pub mod demo;
pub mod dump;
pub mod evaluate;
pub mod failure;
pub mod flags;
pub mod health;
pub mod locate;
pub mod models;
pub mod open_loop;
pub mod queue_probe;
pub mod recommend;
pub mod search;
pub mod serve;
pub mod soak;
pub mod stats;
pub mod torch_peer;
pub mod train;
pub mod worker;
