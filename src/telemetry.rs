//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`). JSON lines for log
//! collectors, or plain text for people; colour only when stderr is a terminal (and `NO_COLOR`
//! is unset), so `docker logs` never shows escape codes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, plain text when it is.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Plain text.
    Plain,
}

impl LogFormat {
    /// Whether lines are JSON, for a stderr that is (or is not) a terminal.
    pub fn is_json(self, terminal: bool) -> bool {
        match self {
            Self::Auto => !terminal,
            Self::Json => true,
            Self::Plain => false,
        }
    }
}

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(format: LogFormat) {
    let terminal = std::io::stderr().is_terminal();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if format.is_json(terminal) {
        builder.json().flatten_event(true).try_init()
    } else {
        let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        builder.with_ansi(colour).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_json_exactly_when_stderr_is_not_a_terminal() {
        assert!(LogFormat::Auto.is_json(false));
        assert!(!LogFormat::Auto.is_json(true));
        assert!(LogFormat::Json.is_json(true));
        assert!(!LogFormat::Plain.is_json(false));
    }
}
