//! Which flags were typed on the command line, as opposed to read from the environment, `.env`
//! or a default. Some choices depend on it: a release typed with `--dataset` must match the
//! files `dump` reads, while one from `.env` gives way to them.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command};

/// Whether the argument `id` was typed on the command line.
pub fn typed(matches: &ArgMatches, id: &str) -> bool {
    matches.try_contains_id(id).unwrap_or(false)
        && matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// The flags (`--name`) of the group `G` that were typed on the command line.
pub fn typed_of<G: Args>(matches: &ArgMatches) -> Vec<String> {
    G::augment_args(Command::new("group"))
        .get_arguments()
        .filter(|arg| typed(matches, arg.get_id().as_str()))
        .map(|arg| format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str())))
        .collect()
}

/// Whether a subcommand's arguments use the old name `--version` for `--dataset` (which clap
/// accepts as a hidden alias and does not report).
pub fn uses_old_dataset_flag(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--version" || a.to_string_lossy().starts_with("--version="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        worker: movierec::config::WorkerSettings,
        #[arg(long)]
        other: Option<u32>,
    }

    #[test]
    fn only_typed_flags_of_the_group_are_reported() {
        let matches = <Probe as clap::CommandFactory>::command()
            .try_get_matches_from(["probe", "--batch-size", "8", "--other", "1"])
            .unwrap();
        Probe::from_arg_matches(&matches).unwrap();
        assert_eq!(
            typed_of::<movierec::config::WorkerSettings>(&matches),
            vec!["--batch-size"]
        );
        assert!(typed(&matches, "other"));
        assert!(!typed(&matches, "concurrency"));
    }

    #[test]
    fn the_old_dataset_flag_is_seen_before_a_double_dash_only() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(uses_old_dataset_flag(args(&[
            "movierec",
            "serve",
            "--version",
            "ml-100k"
        ])));
        assert!(uses_old_dataset_flag(args(&[
            "movierec",
            "dump",
            "--version=ml-1m"
        ])));
        assert!(!uses_old_dataset_flag(args(&[
            "movierec",
            "dump",
            "--dataset",
            "ml-1m"
        ])));
        assert!(!uses_old_dataset_flag(args(&[
            "movierec",
            "search",
            "--",
            "--version"
        ])));
    }
}
