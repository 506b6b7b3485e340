//! Fitting the non-neural models on a split's training items, their settings chosen on
//! validation NDCG@10 (full ranking), and `train --model transition|ease`, which writes them as
//! checkpoints that are evaluated and served like the networks.

use std::path::PathBuf;

use serde::Serialize;

use super::TrainError;
use super::data::build_dataset;
use super::evaluate::{EvalCase, ranks_with};
use super::metrics::{RankingMetrics, full_rank};
use super::report::{EaseSettings, EvalSplit};
use super::run_dir::RunDir;
use crate::baseline::blend::{Blend, combine, standardise};
use crate::baseline::ease::Gram;
use crate::baseline::stored::{
    BASELINE_FORMAT, BaselineConfig, BaselineKind, BaselineModel, BlendSettings, StoredBaseline,
    load_scores,
};
use crate::baseline::{Ease, Transition, TransitionParams};
use crate::catalogue::Catalogue;
use crate::config::MovieLensVersion;
use crate::model::Precision;
use crate::model::checkpoint::DataSettings;
use crate::recommend::ItemScores;

/// The settings the transition model is tuned over: every combination is fitted (once per
/// window, decay and direction) and scored on validation.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionGrid {
    pub windows: Vec<usize>,
    pub distance_decays: Vec<f32>,
    pub both_directions: Vec<bool>,
    pub histories: Vec<usize>,
    pub recency_decays: Vec<f32>,
}

impl Default for TransitionGrid {
    fn default() -> Self {
        Self {
            windows: vec![1, 2, 3, 5, 8],
            distance_decays: vec![0.5, 1.0, 2.0],
            both_directions: vec![false, true],
            histories: vec![1, 3, 5, 10, 20],
            recency_decays: vec![0.5, 1.0, 2.0],
        }
    }
}

impl TransitionGrid {
    /// A grid of one point: `params` as given.
    pub fn only(params: TransitionParams) -> Self {
        Self {
            windows: vec![params.window],
            distance_decays: vec![params.distance_decay],
            both_directions: vec![params.both_directions],
            histories: vec![params.history],
            recency_decays: vec![params.recency_decay],
        }
    }
}

/// A fitted model, its validation metrics and what was tried.
pub struct Tuned<M> {
    pub model: M,
    pub valid: RankingMetrics,
    /// Every setting tried with its validation NDCG@10.
    pub tried: Vec<(serde_json::Value, f64)>,
}

/// The training items of each user: what every non-neural model is fitted on.
fn training_sequences(eval: &EvalSplit) -> Vec<&[u32]> {
    eval.split.iter().map(|u| u.valid_history()).collect()
}

/// Fits the transition model on the training items for every point of `grid` and keeps the one
/// with the best validation NDCG@10 (the first of equals).
pub fn tune_transition(
    eval: &EvalSplit,
    grid: &TransitionGrid,
) -> Result<Tuned<Transition>, TrainError> {
    let sequences = training_sequences(eval);
    let items = eval.popularity.len();
    let mut best: Option<(f64, TransitionParams, RankingMetrics)> = None;
    let mut tried = Vec::new();
    for &window in &grid.windows {
        for &distance_decay in &grid.distance_decays {
            for &both_directions in &grid.both_directions {
                let fit_params = TransitionParams {
                    window,
                    distance_decay,
                    both_directions,
                    ..TransitionParams::default()
                };
                let model = Transition::fit(&sequences, &eval.popularity, fit_params)
                    .map_err(|e| TrainError::Invalid(e.to_string()))?;
                for &history in &grid.histories {
                    for &recency_decay in &grid.recency_decays {
                        let params = TransitionParams {
                            history,
                            recency_decay,
                            ..fit_params
                        };
                        params
                            .validate()
                            .map_err(|e| TrainError::Invalid(e.to_string()))?;
                        let valid = valid_metrics(items, &eval.valid, |h, row| {
                            model.score_with(h, history, recency_decay, row);
                        });
                        tried.push((
                            serde_json::to_value(params).unwrap_or_default(),
                            valid.ndcg_10,
                        ));
                        if best.as_ref().is_none_or(|b| valid.ndcg_10 > b.0) {
                            best = Some((valid.ndcg_10, params, valid));
                        }
                    }
                }
            }
        }
    }
    let Some((_, params, valid)) = best else {
        return Err(TrainError::Invalid("the transition grid is empty".into()));
    };
    tracing::info!(
        ?params,
        valid_ndcg10 = valid.ndcg_10,
        "transition model tuned"
    );
    let model = Transition::fit(&sequences, &eval.popularity, params)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(Tuned {
        model,
        valid,
        tried,
    })
}

/// Fits EASE on the training items for each λ of `settings` and keeps the one with the best
/// validation NDCG@10. `Err` says why EASE cannot be fitted (too many items, no λ).
pub fn tune_ease(eval: &EvalSplit, settings: &EaseSettings) -> Result<Tuned<Ease>, String> {
    if settings.lambdas.is_empty() {
        return Err("EASE turned off (no lambdas)".into());
    }
    let items = eval.popularity.len();
    let histories: Vec<Vec<usize>> = training_sequences(eval)
        .iter()
        .map(|h| h.iter().map(|&i| i as usize).collect())
        .collect();
    let gram = Gram::new(
        histories.iter().map(Vec::as_slice),
        items,
        settings.max_items,
    )
    .map_err(|e| e.to_string())?;
    let mut best: Option<(f64, Ease, RankingMetrics)> = None;
    let mut tried = Vec::new();
    for &lambda in &settings.lambdas {
        let ease = gram.fit(lambda).map_err(|e| e.to_string())?;
        let valid = valid_metrics(items, &eval.valid, |h, row| {
            let h: Vec<usize> = h.iter().map(|&i| i as usize).collect();
            ease.score_into(&h, row);
        });
        tracing::info!(lambda, valid_ndcg10 = valid.ndcg_10, "EASE fitted");
        tried.push((serde_json::json!({ "lambda": lambda }), valid.ndcg_10));
        if best.as_ref().is_none_or(|b| valid.ndcg_10 > b.0) {
            best = Some((valid.ndcg_10, ease, valid));
        }
    }
    let Some((_, model, valid)) = best else {
        return Err("EASE turned off (no lambdas)".into());
    };
    Ok(Tuned {
        model,
        valid,
        tried,
    })
}

/// Weights for `members` (each scoring the split's items), chosen on validation NDCG@10 over a
/// grid of the simplex with `steps` steps per unit (the first of equals wins).
pub fn tune_blend(
    eval: &EvalSplit,
    members: &[&dyn ItemScores],
    steps: usize,
) -> Result<Tuned<Vec<f32>>, TrainError> {
    use rayon::prelude::*;
    let items = eval.popularity.len();
    // Standardised validation rows, member by member: scored once, combined per weighting.
    let mut rows: Vec<Vec<Vec<f32>>> = Vec::with_capacity(members.len());
    for m in members {
        let histories: Vec<&[u32]> = eval.valid.iter().map(|c| c.history.as_slice()).collect();
        let mut member_rows = Vec::with_capacity(histories.len());
        for chunk in histories.chunks(256) {
            member_rows.extend(
                m.score_rows(chunk)
                    .map_err(|e| TrainError::Invalid(e.to_string()))?,
            );
        }
        member_rows.par_iter_mut().for_each(|r| standardise(r));
        rows.push(member_rows);
    }
    let mut best: Option<(f64, Vec<f32>, RankingMetrics)> = None;
    let mut tried = Vec::new();
    for weights in simplex(members.len(), steps.max(1)) {
        if weights.iter().filter(|&&w| w > 0.0).count() < 2 {
            continue;
        }
        let ranks: Vec<usize> = eval
            .valid
            .par_iter()
            .enumerate()
            .map_init(
                || vec![0f32; items],
                |out, (i, case)| {
                    let case_rows: Vec<&[f32]> = rows.iter().map(|m| m[i].as_slice()).collect();
                    combine(&case_rows, &weights, out);
                    full_rank(out, case.target, &case.history)
                },
            )
            .collect();
        let valid = RankingMetrics::from_ranks(&ranks);
        tried.push((serde_json::json!({ "weights": weights }), valid.ndcg_10));
        if best.as_ref().is_none_or(|b| valid.ndcg_10 > b.0) {
            best = Some((valid.ndcg_10, weights, valid));
        }
    }
    let Some((_, model, valid)) = best else {
        return Err(TrainError::Invalid(
            "a blend needs two or more members".into(),
        ));
    };
    tracing::info!(?model, valid_ndcg10 = valid.ndcg_10, "blend weights tuned");
    Ok(Tuned {
        model,
        valid,
        tried,
    })
}

/// Every weighting of `n` members in steps of `1 / steps` that sums to one.
fn simplex(n: usize, steps: usize) -> Vec<Vec<f32>> {
    fn go(n: usize, left: usize, steps: usize, prefix: &mut Vec<usize>, out: &mut Vec<Vec<f32>>) {
        if prefix.len() + 1 == n {
            prefix.push(left);
            out.push(prefix.iter().map(|&k| k as f32 / steps as f32).collect());
            prefix.pop();
            return;
        }
        for k in 0..=left {
            prefix.push(k);
            go(n, left - k, steps, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    if n > 0 {
        go(n, steps, steps, &mut Vec::new(), &mut out);
    }
    out
}

fn valid_metrics<F>(items: usize, cases: &[EvalCase], score: F) -> RankingMetrics
where
    F: Fn(&[u32], &mut [f32]) + Sync,
{
    RankingMetrics::from_ranks(&ranks_with(items, cases, None, score).0)
}

/// Steps per unit of the blend's weight grid (0.05).
const BLEND_STEPS: usize = 20;

/// A member as the blend records it: relative to the checkpoint root when inside it (so the
/// root can move), else absolute.
fn relative_member(root: &std::path::Path, member: &std::path::Path) -> PathBuf {
    let absolute =
        |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (root, member) = (absolute(root), absolute(member));
    member
        .strip_prefix(&root)
        .map_or_else(|_| member.clone(), std::path::Path::to_path_buf)
}

/// What `train --model transition|ease|blend` needs.
#[derive(Debug, Clone)]
pub struct BaselineTrainOptions {
    pub kind: BaselineKind,
    pub dataset: MovieLensVersion,
    pub database_root: PathBuf,
    pub checkpoint_root: PathBuf,
    pub data: DataSettings,
    pub transition_grid: TransitionGrid,
    pub ease: EaseSettings,
    /// A blend's members: checkpoint directories of the same release and data settings.
    pub members: Vec<PathBuf>,
}

/// What a fitted non-neural checkpoint scored.
#[derive(Debug, Clone)]
pub struct BaselineTrainReport {
    pub checkpoint: PathBuf,
    pub settings: serde_json::Value,
    pub valid: RankingMetrics,
    pub test: RankingMetrics,
    pub seconds: f64,
}

/// Fits a non-neural model on the release's split, tuned on validation, scores it on test and
/// writes it as a checkpoint under the checkpoint root.
pub fn train_baseline(opts: &BaselineTrainOptions) -> Result<BaselineTrainReport, TrainError> {
    let started = std::time::Instant::now();
    let catalogue = Catalogue::open_release(&opts.database_root, opts.dataset)?;
    let dataset = build_dataset(&catalogue.interactions(opts.data.min_rating)?, &opts.data);
    if dataset.users.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: no user has {} or more ratings",
            opts.dataset, opts.data.min_seq_len
        )));
    }
    let eval = EvalSplit::new(&dataset);
    let items = dataset.vocab.len();
    let (model, settings, valid, tried) = match opts.kind {
        BaselineKind::Transition => {
            let tuned = tune_transition(&eval, &opts.transition_grid)?;
            let settings = serde_json::to_value(tuned.model.params()).unwrap_or_default();
            (
                BaselineModel::Transition(tuned.model),
                settings,
                tuned.valid,
                tuned.tried,
            )
        }
        BaselineKind::Ease => {
            let tuned = tune_ease(&eval, &opts.ease).map_err(TrainError::Invalid)?;
            let settings = serde_json::json!({ "lambda": tuned.model.lambda() });
            (
                BaselineModel::Ease(tuned.model),
                settings,
                tuned.valid,
                tuned.tried,
            )
        }
        BaselineKind::Blend => {
            let mut scores = Vec::with_capacity(opts.members.len());
            for dir in &opts.members {
                let (s, _, vocab) = load_scores(dir, Precision::F32)
                    .map_err(|e| TrainError::Invalid(e.to_string()))?;
                if vocab != dataset.vocab {
                    return Err(TrainError::Invalid(format!(
                        "{}: its items differ from the catalogue's split; blend members must be \
                         trained on the same release and data settings",
                        dir.display()
                    )));
                }
                scores.push(s);
            }
            let refs: Vec<&dyn ItemScores> = scores.iter().map(AsRef::as_ref).collect();
            let tuned = tune_blend(&eval, &refs, BLEND_STEPS)?;
            let members = opts
                .members
                .iter()
                .map(|m| relative_member(&opts.checkpoint_root, m))
                .collect();
            let settings = serde_json::to_value(BlendSettings {
                members,
                weights: tuned.model.clone(),
            })
            .unwrap_or_default();
            let blend =
                Blend::new(scores, tuned.model).map_err(|e| TrainError::Invalid(e.to_string()))?;
            (
                BaselineModel::Blend(blend),
                settings,
                tuned.valid,
                tuned.tried,
            )
        }
    };
    let test = {
        let scores: &dyn ItemScores = match &model {
            BaselineModel::Transition(t) => t,
            BaselineModel::Ease(e) => e,
            BaselineModel::Blend(b) => b,
        };
        let (ranks, _) = super::evaluate::item_scores_ranks(scores, &eval.test, None, 256)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        RankingMetrics::from_ranks(&ranks)
    };
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let config = BaselineConfig {
        format: BASELINE_FORMAT,
        architecture: opts.kind,
        dataset: opts.dataset,
        vocab: dataset.vocab.clone(),
        popularity: eval.popularity.clone(),
        data: opts.data.clone(),
        settings: settings.clone(),
        metrics: serde_json::json!({
            "valid": valid,
            "test": test,
            "tried": tried
                .iter()
                .map(|(s, v)| serde_json::json!({ "settings": s, "valid_ndcg10": v }))
                .collect::<Vec<_>>(),
        }),
        created_at,
        commit: crate::model::checkpoint::BUILD_COMMIT.map(str::to_string),
    };
    let dir = RunDir::create(
        &opts.checkpoint_root,
        opts.dataset,
        opts.kind.name(),
        created_at,
    )?
    .path()
    .to_path_buf();
    let stored = StoredBaseline { config, model };
    stored
        .save(&dir)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    tracing::info!(items, checkpoint = %dir.display(), "non-neural model written");
    Ok(BaselineTrainReport {
        checkpoint: dir,
        settings,
        valid,
        test,
        seconds: started.elapsed().as_secs_f64(),
    })
}
