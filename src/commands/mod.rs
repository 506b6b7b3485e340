//! One module per subcommand: its clap arguments and the call into the library.

pub mod bench;
pub mod dump;
pub mod evaluate;
pub mod recommend;
pub mod search;
pub mod train;
