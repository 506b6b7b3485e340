//! Plain data of a job: its id, what it asks, what it answers and where it stands.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::recommend::{ModelInfo, RecommendRequest, Recommendation};
use crate::worker::ChosenBy;

/// A job id, minted by the API (a UUID v4 in its hyphenated form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobId(String);

impl JobId {
    /// A fresh random id.
    pub fn mint() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Parses an id given by a caller; `None` unless it is a UUID (so it can never name
    /// anything but a job).
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text)
            .ok()
            .map(|u| Self(u.hyphenated().to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which model answers a job: the one it names, else the weighted split (by its user key when it
/// has one). Both default to none, so jobs of earlier releases still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The model the request named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Who asks, so that one user always gets the same arm of the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
}

/// The payload stored in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecommendJob {
    /// What to recommend.
    pub request: RecommendRequest,
    /// Which model answers.
    #[serde(default)]
    pub route: Route,
    /// When the API accepted it (Unix milliseconds), for end-to-end job latency.
    pub enqueued_at_ms: u64,
}

impl RecommendJob {
    /// Wraps a request and its route, stamped with the current time.
    pub fn new(request: RecommendRequest, route: Route) -> Self {
        Self {
            request,
            route,
            enqueued_at_ms: now_ms(),
        }
    }

    /// Milliseconds since the job was accepted (0 when clocks disagree).
    pub fn age_ms(&self) -> u64 {
        now_ms().saturating_sub(self.enqueued_at_ms)
    }
}

/// Current Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a finished job stores: the recommendation, the model that made it, and how that model
/// was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutput {
    #[serde(flatten)]
    pub recommendation: Recommendation,
    pub model: ModelInfo,
    #[serde(default)]
    pub chosen_by: ChosenBy,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker (or for a retry).
    Queued,
    /// A worker holds it.
    Running,
    /// Finished with a result.
    Done,
    /// Failed for good; `error` says why.
    Failed,
}

impl JobState {
    /// Done or failed: it will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }

    /// The lowercase name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// A job's state with its result or error.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub state: JobState,
    /// Present when `state` is `Done`.
    pub result: Option<JobOutput>,
    /// Present when `state` is `Failed` (and, for a job waiting on a retry, the last error).
    pub error: Option<String>,
}

impl JobStatus {
    /// The status of a job that ended: done with its output, or failed with its error.
    pub fn ended(outcome: Result<JobOutput, String>) -> Self {
        match outcome {
            Ok(out) => Self {
                state: JobState::Done,
                result: Some(out),
                error: None,
            },
            Err(e) => Self {
                state: JobState::Failed,
                result: None,
                error: Some(e),
            },
        }
    }

    /// A status without result or error.
    pub fn bare(state: JobState) -> Self {
        Self {
            state,
            result: None,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_uuids_and_round_trip() {
        let id = JobId::mint();
        assert_eq!(JobId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(JobId::parse("not-a-job"), None);
        assert_eq!(JobId::parse("../../etc/passwd"), None);
    }

    #[test]
    fn output_serialises_flat() {
        let out = JobOutput {
            recommendation: Recommendation {
                items: vec![crate::recommend::ScoredMovie {
                    movie_id: 3,
                    score: 1.5,
                }],
                unknown_ids: vec![9],
                fallback: false,
            },
            model: ModelInfo {
                architecture: "popularity".into(),
                dataset: "ml-100k".into(),
                checkpoint: String::new(),
                items: 10,
                max_len: 0,
                precision: crate::model::Precision::F32,
            },
            chosen_by: ChosenBy::Request,
        };
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["chosen_by"], "request");
        assert_eq!(v["items"][0]["movie_id"], 3);
        assert_eq!(v["unknown_ids"][0], 9);
        assert_eq!(v["model"]["architecture"], "popularity");
        let back: JobOutput = serde_json::from_value(v).unwrap();
        assert_eq!(back, out);
    }
}
