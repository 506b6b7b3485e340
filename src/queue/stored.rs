//! The compact form a finished job's result takes in Redis: movie ids and scores in two arrays,
//! the model as one tuple, a failure as its message. Titles and the rest of the catalogue are
//! joined when the result is read, so none of it is stored per job.

use serde::{Deserialize, Serialize};

use super::{JobOutput, QueueError};
use crate::model::Precision;
use crate::recommend::{ModelInfo, Recommendation, ScoredMovie};
use crate::worker::ChosenBy;

/// Architecture, dataset, checkpoint, items, max_len.
type ModelTuple = (String, String, String, usize, usize);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(rename = "i", default, skip_serializing_if = "Vec::is_empty")]
    ids: Vec<i64>,
    #[serde(rename = "s", default, skip_serializing_if = "Vec::is_empty")]
    scores: Vec<f32>,
    #[serde(rename = "u", default, skip_serializing_if = "Vec::is_empty")]
    unknown: Vec<i64>,
    #[serde(rename = "f", default, skip_serializing_if = "std::ops::Not::not")]
    fallback: bool,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    model: Option<ModelTuple>,
    /// True when the request named the model (false: the split chose it).
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    requested: bool,
    /// The model's precision where it is not f32.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    precision: Option<Precision>,
}

/// A final outcome in its stored form.
pub(super) fn encode(outcome: &Result<JobOutput, String>) -> Result<String, QueueError> {
    let stored = match outcome {
        Ok(out) => {
            let r = &out.recommendation;
            let m = &out.model;
            Stored {
                error: None,
                ids: r.items.iter().map(|s| s.movie_id).collect(),
                scores: r.items.iter().map(|s| s.score).collect(),
                unknown: r.unknown_ids.clone(),
                fallback: r.fallback,
                model: Some((
                    m.architecture.clone(),
                    m.dataset.clone(),
                    m.checkpoint.clone(),
                    m.items,
                    m.max_len,
                )),
                requested: out.chosen_by == ChosenBy::Request,
                precision: (m.precision != Precision::F32).then_some(m.precision),
            }
        }
        Err(e) => Stored {
            error: Some(e.clone()),
            ..Stored::default()
        },
    };
    serde_json::to_string(&stored).map_err(|e| QueueError::Corrupt(format!("job result: {e}")))
}

/// A stored outcome read back.
pub(super) fn decode(raw: &str) -> Result<Result<JobOutput, String>, QueueError> {
    let s: Stored =
        serde_json::from_str(raw).map_err(|e| QueueError::Corrupt(format!("job result: {e}")))?;
    if let Some(e) = s.error {
        return Ok(Err(e));
    }
    let Some((architecture, dataset, checkpoint, items, max_len)) = s.model else {
        return Err(QueueError::Corrupt("job result without its model".into()));
    };
    if s.ids.len() != s.scores.len() {
        return Err(QueueError::Corrupt(format!(
            "job result with {} ids and {} scores",
            s.ids.len(),
            s.scores.len()
        )));
    }
    Ok(Ok(JobOutput {
        recommendation: Recommendation {
            items: s
                .ids
                .into_iter()
                .zip(s.scores)
                .map(|(movie_id, score)| ScoredMovie { movie_id, score })
                .collect(),
            unknown_ids: s.unknown,
            fallback: s.fallback,
        },
        model: ModelInfo {
            architecture,
            dataset,
            checkpoint,
            items,
            max_len,
            precision: s.precision.unwrap_or_default(),
        },
        chosen_by: if s.requested {
            ChosenBy::Request
        } else {
            ChosenBy::Split
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> JobOutput {
        JobOutput {
            recommendation: Recommendation {
                items: (1..=10)
                    .map(|i| ScoredMovie {
                        movie_id: 1000 + i,
                        score: 1.0 / i as f32,
                    })
                    .collect(),
                unknown_ids: vec![99_999],
                fallback: false,
            },
            model: ModelInfo {
                architecture: "sasrec".into(),
                dataset: "ml-100k".into(),
                checkpoint: "resources/checkpoints/ml-100k-sasrec".into(),
                items: 1682,
                max_len: 200,
                precision: Precision::Bf16,
            },
            chosen_by: ChosenBy::Request,
        }
    }

    #[test]
    fn results_and_failures_round_trip() {
        let ok = Ok(output());
        assert_eq!(decode(&encode(&ok).unwrap()).unwrap(), ok);
        let failed: Result<JobOutput, String> = Err("k must be at least 1".into());
        assert_eq!(decode(&encode(&failed).unwrap()).unwrap(), failed);
        let empty = Ok(JobOutput {
            recommendation: Recommendation {
                items: vec![],
                unknown_ids: vec![],
                fallback: true,
            },
            ..output()
        });
        assert_eq!(decode(&encode(&empty).unwrap()).unwrap(), empty);
        let mut f32 = output();
        f32.model.precision = Precision::F32;
        let stored = encode(&Ok(f32.clone())).unwrap();
        assert!(!stored.contains("\"p\""), "{stored}");
        assert_eq!(decode(&stored).unwrap(), Ok(f32));
    }

    #[test]
    fn the_stored_form_is_less_than_half_the_plain_json() {
        let compact = encode(&Ok(output())).unwrap().len();
        let plain = serde_json::to_string(&Ok::<_, String>(output()))
            .unwrap()
            .len();
        assert!(compact * 2 < plain, "{compact} vs {plain} bytes");
    }

    #[test]
    fn mismatched_or_incomplete_results_are_corrupt() {
        assert!(decode(r#"{"i":[1,2],"s":[0.5],"m":["a","d","",1,0]}"#).is_err());
        assert!(decode(r#"{"i":[1],"s":[0.5]}"#).is_err());
        assert!(decode("not json").is_err());
    }
}
