//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`). JSON lines for log
//! collectors, or plain text for people; colour only when stderr is a terminal (and `NO_COLOR`
//! is unset), so `docker logs` never shows escape codes.
//!
//! actix-http answers a connection whose bytes are not HTTP with a 400 of its own and logs it at
//! ERROR ("stream error"), before any of the API's code runs: a client could flood the error log
//! that way. Its dispatcher's lines are off unless `RUST_LOG` names `actix_http`; the API's own
//! access line logs every request it does see (see `http::access_log`).

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

/// The directive that silences actix-http's connection-level lines.
const QUIET_DISPATCHER: &str = "actix_http::h1::dispatcher=off";

/// The filter for `RUST_LOG` (unset: `info`), with actix-http's dispatcher off unless named.
fn filter_spec(rust_log: Option<&str>) -> String {
    let spec = rust_log.unwrap_or("info");
    if spec.contains("actix_http") {
        spec.to_owned()
    } else if spec.trim().is_empty() {
        format!("info,{QUIET_DISPATCHER}")
    } else {
        format!("{spec},{QUIET_DISPATCHER}")
    }
}

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(format: LogFormat) {
    let terminal = std::io::stderr().is_terminal();
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = EnvFilter::try_new(filter_spec(rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(filter_spec(None)));
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

    #[test]
    fn the_dispatcher_is_quiet_unless_named() {
        assert_eq!(filter_spec(None), "info,actix_http::h1::dispatcher=off");
        assert_eq!(
            filter_spec(Some("movierec=debug")),
            "movierec=debug,actix_http::h1::dispatcher=off"
        );
        assert_eq!(filter_spec(Some("actix_http=trace")), "actix_http=trace");
        assert!(EnvFilter::try_new(filter_spec(Some("warn"))).is_ok());
    }
}
