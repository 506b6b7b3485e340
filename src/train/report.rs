//! `movierec evaluate`: checkpoints and the popularity baseline on the same leave-one-out
//! split, full ranking on test and validation, plus the sampled protocol of the paper
//! (100 negatives by training popularity), labelled as sampled.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::TrainError;
use super::baselines::{TransitionGrid, tune_ease, tune_transition};
use super::data::{Dataset, SplitUser, build_dataset, leave_one_out, train_popularity};
use super::evaluate::{
    EvalCase, Stage, cases, item_scores_ranks, model_ranks, popularity_ranks, sample_negatives,
};
use super::metrics::{PairedDifference, RankingMetrics};
use crate::baseline::stored::{BaselineConfig, load_scores};
use crate::catalogue::Catalogue;
use crate::config::MovieLensVersion;
use crate::model::checkpoint::{self, CheckpointConfig, CheckpointKind, DataSettings};
use crate::model::{ItemVocab, Precision, SeqModel};
use crate::recommend::ItemScores;

/// Negatives per case in the sampled protocol.
pub const SAMPLED_NEGATIVES: usize = 100;
/// Seed of the sampled negatives, fixed so every model meets the same ones.
const NEGATIVES_SEED: u64 = 2019;

/// One model or baseline on one split.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// `popularity`, or the checkpoint directory's name.
    pub name: String,
    /// `popularity`, `bert4rec` or `sasrec`.
    pub architecture: String,
    pub checkpoint: Option<PathBuf>,
    /// Full ranking, test item.
    pub test: RankingMetrics,
    /// Full ranking, validation item.
    pub valid: RankingMetrics,
    /// SAMPLED protocol (100 popularity negatives), test item. Not comparable to full ranking.
    pub sampled_test: RankingMetrics,
    /// What a network's dense layers computed in (`f32` or `bf16`); `f32` for the others.
    pub precision: Precision,
    /// Full-ranking test rank per user, in the split's order (for paired comparisons).
    #[serde(skip)]
    pub test_ranks: Vec<usize>,
}

/// A model against another on the same test cases, user by user.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub model: String,
    pub against: String,
    /// `model` − `against`, full ranking, test item.
    pub test: PairedDifference,
}

/// Every model evaluated on one dataset's split.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub dataset: MovieLensVersion,
    pub users: usize,
    pub items: usize,
    pub rows: Vec<ModelReport>,
    /// Why there is no EASE row, when there is none.
    pub ease_skipped: Option<String>,
    /// Each checkpoint against EASE and against the first checkpoint.
    pub comparisons: Vec<Comparison>,
}

/// How the EASE baseline is fitted: λ is the one of `lambdas` with the best validation NDCG@10.
#[derive(Debug, Clone)]
pub struct EaseSettings {
    /// Regularisation values to try; empty turns EASE off.
    pub lambdas: Vec<f64>,
    /// Catalogues with more items than this skip EASE (the solve is dense, `items²` memory).
    pub max_items: usize,
}

impl Default for EaseSettings {
    fn default() -> Self {
        Self {
            lambdas: vec![100.0, 300.0, 1000.0],
            max_items: 20_000,
        }
    }
}

/// The whole report: one section per dataset.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationReport {
    pub datasets: Vec<DatasetReport>,
}

/// A split and everything derived from it that each model is scored on.
pub struct EvalSplit {
    pub split: Vec<SplitUser>,
    pub popularity: Vec<u32>,
    pub valid: Vec<EvalCase>,
    pub test: Vec<EvalCase>,
    pub negatives: Vec<Vec<u32>>,
}

impl EvalSplit {
    /// Prepares the split of `dataset`.
    pub fn new(dataset: &Dataset) -> Self {
        let split = leave_one_out(dataset);
        let popularity = train_popularity(&split, dataset.vocab.len());
        let valid = cases(&split, Stage::Valid);
        let test = cases(&split, Stage::Test);
        let negatives = sample_negatives(&test, &popularity, SAMPLED_NEGATIVES, NEGATIVES_SEED);
        Self {
            split,
            popularity,
            valid,
            test,
            negatives,
        }
    }

    /// The popularity baseline's row.
    pub fn popularity_report(&self) -> ModelReport {
        let (test, sampled) = popularity_ranks(&self.popularity, &self.test, Some(&self.negatives));
        let (valid, _) = popularity_ranks(&self.popularity, &self.valid, None);
        ModelReport {
            name: "popularity".into(),
            architecture: "popularity".into(),
            checkpoint: None,
            test: RankingMetrics::from_ranks(&test),
            valid: RankingMetrics::from_ranks(&valid),
            sampled_test: RankingMetrics::from_ranks(&sampled),
            precision: Precision::F32,
            test_ranks: test,
        }
    }

    /// The EASE row: fitted on the training items of every user, λ chosen on validation
    /// NDCG@10 among `settings.lambdas`, then scored on test with the same weights.
    /// `Err` carries why EASE was skipped.
    pub fn ease_report(&self, settings: &EaseSettings) -> Result<ModelReport, String> {
        let tuned = tune_ease(self, settings)?;
        let name = format!("ease (lambda {})", tuned.model.lambda());
        self.scores_report(&name, "ease", &tuned.model, None)
            .map_err(|e| e.to_string())
    }

    /// The transition row: fitted on the training items, settings chosen on validation NDCG@10
    /// over `grid`, then scored on test.
    pub fn transition_report(&self, grid: &TransitionGrid) -> Result<ModelReport, TrainError> {
        let tuned = tune_transition(self, grid)?;
        let p = tuned.model.params();
        let name = format!(
            "transition (w{} h{}{})",
            p.window,
            p.history,
            if p.both_directions { " both" } else { "" }
        );
        self.scores_report(&name, "transition", &tuned.model, None)
    }

    /// The row of any scoring model.
    pub fn scores_report(
        &self,
        name: &str,
        architecture: &str,
        scores: &dyn ItemScores,
        checkpoint: Option<PathBuf>,
    ) -> Result<ModelReport, TrainError> {
        let invalid = |e: crate::recommend::ScoreError| TrainError::Invalid(e.to_string());
        let (test, sampled) =
            item_scores_ranks(scores, &self.test, Some(&self.negatives), 256).map_err(invalid)?;
        let (valid, _) = item_scores_ranks(scores, &self.valid, None, 256).map_err(invalid)?;
        Ok(ModelReport {
            name: name.to_string(),
            architecture: architecture.to_string(),
            checkpoint,
            test: RankingMetrics::from_ranks(&test),
            valid: RankingMetrics::from_ranks(&valid),
            sampled_test: RankingMetrics::from_ranks(&sampled),
            precision: Precision::F32,
            test_ranks: test,
        })
    }

    /// A model's row.
    pub fn model_report(
        &self,
        name: &str,
        model: &SeqModel,
        checkpoint: Option<PathBuf>,
    ) -> Result<ModelReport, TrainError> {
        let (test, sampled) = model_ranks(model, &self.test, Some(&self.negatives), 256)?;
        let (valid, _) = model_ranks(model, &self.valid, None, 256)?;
        Ok(ModelReport {
            name: name.to_string(),
            architecture: model.config().architecture.name().to_string(),
            checkpoint,
            test: RankingMetrics::from_ranks(&test),
            valid: RankingMetrics::from_ranks(&valid),
            sampled_test: RankingMetrics::from_ranks(&sampled),
            precision: Precision::F32,
            test_ranks: test,
        })
    }
}

/// A checkpoint to evaluate: its directory and items.
struct Member {
    dir: PathBuf,
    vocab: ItemVocab,
}

/// Checkpoints that share a dataset and data settings, so one split and its baselines serve
/// them all.
type CheckpointGroup = (MovieLensVersion, DataSettings, Vec<Member>);

/// Picks one metrics block out of a model report.
type MetricsOf = fn(&ModelReport) -> &RankingMetrics;

/// Reads what grouping needs from a checkpoint of any kind.
fn member(dir: &Path) -> Result<(MovieLensVersion, DataSettings, Member), TrainError> {
    let (dataset, data, vocab) = match checkpoint::kind(dir)? {
        CheckpointKind::Network => {
            let cfg = CheckpointConfig::read(dir)?;
            (cfg.dataset, cfg.data, cfg.vocab)
        }
        CheckpointKind::Baseline => {
            let cfg = BaselineConfig::read(dir).map_err(|e| TrainError::Invalid(e.to_string()))?;
            (cfg.dataset, cfg.data, cfg.vocab)
        }
    };
    let member = Member {
        dir: dir.to_path_buf(),
        vocab,
    };
    Ok((dataset, data, member))
}

/// Evaluates checkpoints of any model type (grouped by dataset and data settings) with the
/// popularity, EASE and transition baselines of each group, reading the catalogues under
/// `database_root`. Each checkpoint gives a row per precision of `precisions`, in order (a
/// network computes its dense layers in it; the others score the same). Each of `baselines` without a checkpoint adds a group of its own with the
/// default data settings.
pub fn evaluate_checkpoints(
    dirs: &[PathBuf],
    baselines: &[MovieLensVersion],
    database_root: &Path,
    ease: &EaseSettings,
    transition: &TransitionGrid,
    precisions: &[Precision],
) -> Result<EvaluationReport, TrainError> {
    let mut groups: Vec<CheckpointGroup> = Vec::new();
    for dir in dirs {
        let (dataset, data, m) = member(dir)?;
        match groups.iter_mut().find(|g| g.0 == dataset && g.1 == data) {
            Some(g) => g.2.push(m),
            None => groups.push((dataset, data, vec![m])),
        }
    }
    for &version in baselines {
        if !groups.iter().any(|g| g.0 == version) {
            groups.push((version, DataSettings::default(), Vec::new()));
        }
    }
    let mut datasets = Vec::new();
    for (version, data, members) in groups {
        let catalogue = Catalogue::open_release(database_root, version)?;
        let dataset = build_dataset(&catalogue.interactions(data.min_rating)?, &data);
        let eval = EvalSplit::new(&dataset);
        let mut rows = vec![eval.popularity_report()];
        let ease_skipped = match eval.ease_report(ease) {
            Ok(row) => {
                rows.push(row);
                None
            }
            Err(why) => {
                tracing::warn!("{version}: {why}");
                Some(why)
            }
        };
        rows.push(eval.transition_report(transition)?);
        for m in members {
            if m.vocab != dataset.vocab {
                return Err(TrainError::Invalid(format!(
                    "{}: its items differ from the catalogue's; was the catalogue rebuilt?",
                    m.dir.display()
                )));
            }
            let base = row_name(&m.dir, &rows);
            for &precision in precisions {
                let (scores, architecture, _) = load_scores(&m.dir, precision)
                    .map_err(|e| TrainError::Invalid(e.to_string()))?;
                let mut name = base.clone();
                if precision != Precision::F32 {
                    name = format!("{name} {precision}");
                }
                let mut row =
                    eval.scores_report(&name, &architecture, scores.as_ref(), Some(m.dir.clone()))?;
                row.precision = precision;
                rows.push(row);
            }
        }
        let comparisons = comparisons(&rows);
        datasets.push(DatasetReport {
            dataset: version,
            users: eval.split.len(),
            items: dataset.vocab.len(),
            rows,
            ease_skipped,
            comparisons,
        });
    }
    Ok(EvaluationReport { datasets })
}

/// A checkpoint's row name: its directory's name, or, when another row already has that name
/// (runs started in the same second under different roots), its last two path components.
fn row_name(dir: &Path, rows: &[ModelReport]) -> String {
    let tail = |n: usize| {
        let parts: Vec<String> = dir
            .components()
            .rev()
            .take(n)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        parts.into_iter().rev().collect::<Vec<_>>().join("/")
    };
    let short = tail(1);
    if rows.iter().any(|r| r.name == short) {
        tail(2)
    } else {
        short
    }
}

/// Each row but popularity against the baseline rows before it (EASE, transition), and each
/// checkpoint after the first against the first checkpoint.
fn comparisons(rows: &[ModelReport]) -> Vec<Comparison> {
    let first = rows.iter().find(|r| r.checkpoint.is_some());
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row.architecture == "popularity" {
            continue;
        }
        let baselines = rows[..i]
            .iter()
            .filter(|r| r.checkpoint.is_none() && r.architecture != "popularity");
        let against_first = first.filter(|f| row.checkpoint.is_some() && !std::ptr::eq(*f, row));
        for other in baselines.chain(against_first) {
            if let Some(test) = PairedDifference::of(&row.test_ranks, &other.test_ranks) {
                out.push(Comparison {
                    model: row.name.clone(),
                    against: other.name.clone(),
                    test,
                });
            }
        }
    }
    out
}

/// The report as terminal tables.
pub fn render(report: &EvaluationReport) -> String {
    let mut out = String::new();
    for d in &report.datasets {
        let _ = writeln!(
            out,
            "\n{} — {} users, {} items, leave-one-out",
            d.dataset, d.users, d.items
        );
        if let Some(why) = &d.ease_skipped {
            let _ = writeln!(out, "  ({why})");
        }
        let sections: [(&str, MetricsOf); 3] = [
            ("test, full ranking (seen items excluded)", |r| &r.test),
            ("validation, full ranking (seen items excluded)", |r| {
                &r.valid
            }),
            (
                "test, SAMPLED: 100 negatives by popularity (the paper's protocol; not comparable)",
                |r| &r.sampled_test,
            ),
        ];
        for (title, pick) in sections {
            let _ = writeln!(out, "\n  {title}");
            let _ = writeln!(
                out,
                "  {:<40} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
                "model",
                "HR@1",
                "HR@5",
                "HR@10",
                "HR@20",
                "NDCG@5",
                "NDCG@10",
                "NDCG@20",
                "MRR",
                "±NDCG@10"
            );
            for r in &d.rows {
                let m = pick(r);
                let _ = writeln!(
                    out,
                    "  {:<40} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.4}",
                    r.name,
                    m.hr_1,
                    m.hr_5,
                    m.hr_10,
                    m.hr_20,
                    m.ndcg_5,
                    m.ndcg_10,
                    m.ndcg_20,
                    m.mrr,
                    m.ndcg_10_se
                );
            }
        }
        if !d.comparisons.is_empty() {
            let _ = writeln!(
                out,
                "\n  test, paired by user: model − other, mean ± standard error"
            );
            let _ = writeln!(
                out,
                "  {:<40} {:<40} {:>17} {:>17} {:>17}",
                "model", "other", "HR@10", "NDCG@10", "MRR"
            );
            for c in &d.comparisons {
                let t = &c.test;
                let _ = writeln!(
                    out,
                    "  {:<40} {:<40} {:>+8.4} ± {:<6.4} {:>+8.4} ± {:<6.4} {:>+8.4} ± {:<6.4}",
                    c.model,
                    c.against,
                    t.hr_10,
                    t.hr_10_se,
                    t.ndcg_10,
                    t.ndcg_10_se,
                    t.mrr,
                    t.mrr_se
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{ModelReport, comparisons, row_name};
    use crate::train::metrics::RankingMetrics;

    fn row(name: &str, architecture: &str, ranks: &[usize]) -> ModelReport {
        let metrics = RankingMetrics::from_ranks(ranks);
        ModelReport {
            name: name.into(),
            architecture: architecture.into(),
            checkpoint: (architecture != "popularity" && architecture != "ease")
                .then(|| PathBuf::from(name)),
            test: metrics,
            valid: metrics,
            sampled_test: metrics,
            precision: crate::model::Precision::F32,
            test_ranks: ranks.to_vec(),
        }
    }

    #[test]
    fn checkpoints_are_compared_with_ease_and_the_first_checkpoint() {
        let rows = [
            row("popularity", "popularity", &[50, 60, 70]),
            row("ease", "ease", &[5, 20, 30]),
            row("a", "sasrec", &[0, 1, 30]),
            row("b", "bert4rec", &[0, 30, 30]),
        ];
        let pairs: Vec<(String, String)> = comparisons(&rows)
            .into_iter()
            .map(|c| (c.model, c.against))
            .collect();
        let names = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            pairs,
            [names("a", "ease"), names("b", "ease"), names("b", "a")]
        );
        let b_vs_a = &comparisons(&rows)[2].test;
        assert!((b_vs_a.hr_10 - (-1.0 / 3.0)).abs() < 1e-12);
        // Runs of the same second under different roots get told apart.
        assert_eq!(row_name(Path::new("/x/ck-a/run-1"), &rows), "run-1");
        let named = [row("run-1", "sasrec", &[0])];
        assert_eq!(row_name(Path::new("/x/ck-b/run-1/"), &named), "ck-b/run-1");
        // Without EASE, a single checkpoint has nothing to be compared with.
        assert!(comparisons(&rows[2..3]).is_empty());
    }
}
