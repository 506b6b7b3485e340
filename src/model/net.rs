//! The network: item and learned positional embeddings, the encoder blocks, and the output
//! layer: scores against the tied item embeddings plus a per-item bias.
//!
//! The two architectures differ where their papers do. BERT4Rec (Sun et al. 2019) layer-norms
//! the embedding sum and has a projection head (dense, GELU, layer norm) before the scores.
//! SASRec (Kang & McAuley 2018) scales the item embeddings by √hidden, adds the positions
//! without a layer norm, and scores the encoder's (final-normed) output directly.

use candle_core::{Device, Result, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::dropout::{DropoutRng, dropout};
use super::layers::{EncoderBlock, LayerNorm, Linear};
use super::ops::attention::KeyMask;
use super::ops::bf16_dense::PackedBf16;
use super::ops::fused::{add_row, gelu, gelu_inference};
use super::ops::scoring;
use super::{ModelConfig, ModelError, Precision};

/// The additive value that switches a score off: a sampled negative that is the row's target.
const MASKED: f64 = -1e9;

/// The parameter name of the item-embedding table (movies, then padding and [MASK]).
pub const ITEM_EMBEDDINGS: &str = "embeddings.items";

/// Smallest batch that [`SeqModel::score_histories_against`] splits over the rayon threads.
const SPLIT_BATCH: usize = 8;

/// BERT4Rec or SASRec, by [`ModelConfig::architecture`].
///
/// Inputs are left-padded id matrices `(B, T)` with `T <= max_len`. Positions are counted from
/// the right, so the last column always has position `max_len - 1` whatever the padding: a
/// sequence scores the same alone or in a batch padded to a longer member.
pub struct SeqModel {
    cfg: ModelConfig,
    item_embeddings: Tensor,
    position_embeddings: Tensor,
    /// BERT4Rec only.
    embedding_norm: Option<LayerNorm>,
    blocks: Vec<EncoderBlock>,
    final_norm: LayerNorm,
    /// BERT4Rec only: the projection head (dense, then layer norm after GELU).
    head: Option<(Linear, LayerNorm)>,
    output_bias: Tensor,
    /// What inference computes the dense layers in.
    precision: Precision,
    /// In bf16: the movies' embeddings and the output bias packed for the bf16 kernel, so that
    /// scoring every movie reads half the bytes (at 62,423 movies, 8 MB instead of 16).
    packed_output: Option<PackedBf16>,
}

impl SeqModel {
    /// Builds the network from `vb` (a fresh `VarMap` for training, or loaded weights).
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> std::result::Result<Self, ModelError> {
        cfg.validate()?;
        let h = cfg.hidden;
        let normal = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let embeddings = vb.pp("embeddings");
        let encoder = vb.pp("encoder");
        let head = vb.pp("head");
        let bert = cfg.architecture == super::Architecture::Bert4Rec;
        Ok(Self {
            cfg: cfg.clone(),
            item_embeddings: embeddings.get_with_hints((cfg.vocab_size(), h), "items", normal)?,
            position_embeddings: embeddings.get_with_hints(
                (cfg.max_len, h),
                "positions",
                normal,
            )?,
            embedding_norm: bert
                .then(|| LayerNorm::load(embeddings.pp("norm"), h))
                .transpose()?,
            blocks: (0..cfg.layers)
                .map(|i| EncoderBlock::load(encoder.pp(format!("layer{i}")), cfg))
                .collect::<Result<Vec<_>>>()?,
            final_norm: LayerNorm::load(encoder.pp("final_norm"), h)?,
            head: bert
                .then(|| -> Result<_> {
                    Ok((
                        Linear::load(head.pp("dense"), h, h)?,
                        LayerNorm::load(head.pp("norm"), h)?,
                    ))
                })
                .transpose()?,
            output_bias: head.get_with_hints(cfg.items, "bias", Init::Const(0.0))?,
            precision: Precision::F32,
            packed_output: None,
        })
    }

    /// Runs inference's dense layers (the encoder's and BERT4Rec's head) and the scores against
    /// every movie in `precision`; attention, norms and training stay f32. bf16 copies the
    /// weights as they are now: a model that trains after must go back to f32.
    pub fn set_precision(&mut self, precision: Precision) -> std::result::Result<(), ModelError> {
        let head = self.head.as_mut().map(|(dense, _)| dense);
        for layer in self
            .blocks
            .iter_mut()
            .flat_map(EncoderBlock::linears_mut)
            .chain(head)
        {
            if !layer.set_precision(precision)? {
                return Err(ModelError::Bf16Unsupported);
            }
        }
        self.packed_output = match precision {
            Precision::F32 => None,
            Precision::Bf16 => {
                let movies = self.item_embeddings.narrow(0, 0, self.cfg.items)?;
                match PackedBf16::new(&movies, &self.output_bias)? {
                    Some(packed) => Some(packed),
                    None => return Err(ModelError::Bf16Unsupported),
                }
            }
        };
        self.precision = precision;
        Ok(())
    }

    /// What inference computes the dense layers in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Encodes left-padded ids `(B, T)` (u32) into hidden rows `(B*T, H)`. Dropout applies when
    /// `rng` is given (training).
    pub fn encode(&self, ids: &Tensor, mut rng: Option<&mut DropoutRng>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let xs = self.embed(ids)?;
        let xs = match &self.embedding_norm {
            Some(norm) => norm.forward(&xs)?,
            None => xs,
        };
        let mut xs = dropout(&xs, self.cfg.dropout, rng.as_deref_mut())?;
        let mask = self.key_mask(ids)?;
        for block in &self.blocks {
            xs = block.forward(&xs, (b, t), &mask, rng.as_deref_mut())?;
        }
        self.final_norm.forward(&xs)
    }

    /// The embedding rows `(B*T, H)` of left-padded ids `(B, T)`: items plus positions, before
    /// BERT4Rec's embedding norm and before dropout.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self.cfg.hidden;
        if t == 0 || t > self.cfg.max_len {
            candle_core::bail!("sequence length {t} outside 1..={}", self.cfg.max_len);
        }
        let mut items = self
            .item_embeddings
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        if self.embedding_norm.is_none() {
            items = (items * (h as f64).sqrt())?;
        }
        let positions = self
            .position_embeddings
            .narrow(0, self.cfg.max_len - t, t)?
            .reshape(t * h)?;
        add_row(&items.reshape((b, t * h))?, &positions)?.reshape((b * t, h))
    }

    /// The encoder output at the last column of left-padded ids `(B, T)`, inference only:
    /// `(B, H)`, equal to [`encode`](Self::encode) without dropout at that column. The last
    /// block computes its query, feed-forward and norms for that column alone.
    pub fn encode_last(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let mut xs = self.embed(ids)?;
        if let Some(norm) = &self.embedding_norm {
            xs = norm.forward_inference(&xs)?;
        }
        let Some((last, rest)) = self.blocks.split_last() else {
            return self
                .final_norm
                .forward_inference(&super::layers::last_rows(&xs, (b, t))?);
        };
        let mask = self.key_mask(ids)?;
        for block in rest {
            xs = block.infer(&xs, (b, t), &mask, false)?;
        }
        let xs = last.infer(&xs, (b, t), &mask, true)?;
        self.final_norm.forward_inference(&xs)
    }

    /// Scores hidden rows `(N, H)` against every movie: `(N, items)`.
    pub fn scores(&self, hidden: &Tensor) -> Result<Tensor> {
        self.scores_against(hidden, &self.output_matrix()?)
    }

    /// The tied output matrix: the movies' embeddings transposed, `(H, items)`. Inference keeps
    /// it; training must not (the weights move).
    pub fn output_matrix(&self) -> Result<Tensor> {
        self.item_embeddings
            .narrow(0, 0, self.cfg.items)?
            .t()?
            .contiguous()
    }

    /// Training loss: the mean softmax cross-entropy of hidden rows `(N, H)` against their
    /// `targets` over every movie. The output bias is added inside the loss op, which also
    /// gives it its gradient (a broadcast add would cost a strided sum backward).
    pub fn full_softmax_loss(
        &self,
        hidden: &Tensor,
        targets: &[u32],
        label_smoothing: f32,
    ) -> Result<Tensor> {
        let movies = self.item_embeddings.narrow(0, 0, self.cfg.items)?;
        super::ops::loss::head_cross_entropy(
            &self.head(hidden)?,
            &movies,
            &self.output_bias,
            targets,
            label_smoothing,
        )
    }

    /// [`scores`](Self::scores) with a precomputed [`output_matrix`](Self::output_matrix).
    pub fn scores_against(&self, hidden: &Tensor, output: &Tensor) -> Result<Tensor> {
        self.head(hidden)?
            .matmul(output)?
            .broadcast_add(&self.output_bias)
    }

    /// [`scores_against`](Self::scores_against) for inference, recording no graph. In bf16
    /// the scores come from the packed movies (`output` is then not read); in f32 one row is
    /// scored by its own op, more by gemm.
    fn infer_scores_against(&self, hidden: &Tensor, output: &Tensor) -> Result<Tensor> {
        let transformed = match &self.head {
            Some((dense, norm)) => {
                norm.forward_inference(&gelu_inference(&dense.infer(hidden)?)?)?
            }
            None => hidden.clone(),
        };
        if let Some(packed) = &self.packed_output {
            return packed.dense(&transformed);
        }
        if transformed.dim(0)? <= scoring::MAX_ROWS {
            return scoring::scores(&transformed, output, &self.output_bias);
        }
        transformed.matmul(output)?.broadcast_add(&self.output_bias)
    }

    /// The output head before the item scores: dense, GELU, layer norm (BERT4Rec); SASRec
    /// scores the encoder output as it is.
    fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.head {
            Some((dense, norm)) => norm.forward(&gelu(&dense.forward(hidden)?)?),
            None => Ok(hidden.clone()),
        }
    }

    /// Training loss with sampled softmax: the mean over rows of `hidden` `(N, H)` of the
    /// cross-entropy of each row's target against the `K` `negatives` the batch shares, a
    /// negative equal to the row's target left out. With `p` the target's score and `L` the
    /// logsumexp of the negatives' scores, a row's loss is `log(e^p + e^L) - p = softplus(L - p)`;
    /// `L` comes from one op that computes the `(N, K)` scores inside (equal to the cross-entropy
    /// of [`sampled_scores`](Self::sampled_scores), without those scores in the graph).
    pub fn sampled_softmax_loss(
        &self,
        hidden: &Tensor,
        targets: &[u32],
        negatives: &[u32],
    ) -> Result<Tensor> {
        let device = hidden.device();
        let transformed = self.head(hidden)?;
        let positive = self.target_scores(&transformed, targets)?;
        let column: std::collections::HashMap<u32, u32> = negatives
            .iter()
            .enumerate()
            .map(|(c, &id)| (id, c as u32))
            .collect();
        let excluded = targets.iter().map(|t| column.get(t).copied()).collect();
        let negative_ids = Tensor::new(negatives, device)?;
        let lse = super::ops::loss::head_logsumexp(
            &transformed,
            &self.item_embeddings.index_select(&negative_ids, 0)?,
            &self.output_bias.index_select(&negative_ids, 0)?,
            excluded,
        )?;
        let x = (lse - positive)?;
        // softplus(x) = max(x, 0) + log(1 + e^-|x|), stable for large |x|.
        let softplus = (x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        softplus.mean_all()
    }

    /// Each row of the head's output `(N, H)` scored against its own target: `(N)`.
    fn target_scores(&self, transformed: &Tensor, targets: &[u32]) -> Result<Tensor> {
        let target_ids = Tensor::new(targets, transformed.device())?;
        let products = transformed.mul(&self.item_embeddings.index_select(&target_ids, 0)?)?;
        products.sum(1)? + self.output_bias.index_select(&target_ids, 0)?
    }

    /// Scores for sampled softmax, `(N, 1 + K)`: column 0 scores each row of `hidden`
    /// `(N, H)` against its own target, columns `1..` against the `K` `negatives` the batch
    /// shares. A negative equal to a row's target is switched off in that row, so an item is
    /// never its own negative. Memory is `N × K` instead of `N × items`.
    pub fn sampled_scores(
        &self,
        hidden: &Tensor,
        targets: &[u32],
        negatives: &[u32],
    ) -> Result<Tensor> {
        let device = hidden.device();
        let n = targets.len();
        let transformed = self.head(hidden)?;
        let positive = self.target_scores(&transformed, targets)?.unsqueeze(1)?;
        let negative_ids = Tensor::new(negatives, device)?;
        let negative = transformed
            .matmul(&self.item_embeddings.index_select(&negative_ids, 0)?.t()?)?
            .broadcast_add(&self.output_bias.index_select(&negative_ids, 0)?)?;
        let hits: Vec<f32> = targets
            .iter()
            .flat_map(|&t| {
                negatives
                    .iter()
                    .map(move |&x| if x == t { MASKED as f32 } else { 0.0 })
            })
            .collect();
        let negative = (negative + Tensor::from_vec(hits, (n, negatives.len()), device)?)?;
        Tensor::cat(&[positive, negative], 1)
    }

    /// Scores the last column of left-padded ids `(B, T)` (eval mode): `(B, items)`. The head
    /// runs at that position only.
    pub fn score_last(&self, ids: &Tensor) -> Result<Tensor> {
        self.score_last_against(ids, &self.output_matrix()?)
    }

    /// Runs on a rayon worker, so the matmuls and row ops split with the pool's other
    /// threads without waking the calling thread after each one.
    fn score_last_against(&self, ids: &Tensor, output: &Tensor) -> Result<Tensor> {
        rayon::scope(|_| self.infer_scores_against(&self.encode_last(ids)?, output))
    }

    /// The model input that predicts the item after `history`: BERT4Rec appends [MASK] to the
    /// most recent `max_len - 1` items; SASRec reads the most recent `max_len` items and
    /// predicts from the last one.
    pub fn scoring_input(&self, history: &[u32]) -> Vec<u32> {
        let max_len = self.cfg.max_len;
        match self.cfg.architecture {
            super::Architecture::Bert4Rec => {
                let keep = history.len().min(max_len - 1);
                let mut input = history[history.len() - keep..].to_vec();
                input.push(self.cfg.mask());
                input
            }
            super::Architecture::SasRec => {
                let keep = history.len().min(max_len);
                history[history.len() - keep..].to_vec()
            }
        }
    }

    /// Scores the next item after each history in one forward pass, padding the batch to its
    /// longest member: `(B, items)`. Every history must give a non-empty input (SASRec needs at
    /// least one item).
    pub fn score_histories(&self, histories: &[&[u32]]) -> Result<Tensor> {
        self.score_histories_against(histories, &self.output_matrix()?)
    }

    /// [`score_histories`](Self::score_histories) with a precomputed
    /// [`output_matrix`](Self::output_matrix).
    ///
    /// A batch of at least `SPLIT_BATCH` (8) histories is cut into one part per rayon thread, and
    /// each part runs the whole forward pass on its own thread, padded to its own longest
    /// member: the small matrices of a part are not worth a fork and a join per op.
    pub fn score_histories_against(&self, histories: &[&[u32]], output: &Tensor) -> Result<Tensor> {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads();
        if threads < 2 || histories.len() < SPLIT_BATCH {
            return self.score_part(histories, output);
        }
        let part = histories.len().div_ceil(threads);
        let parts = histories
            .par_chunks(part)
            .map(|p| self.score_part(p, output))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// Scores one part of a batch in one forward pass, padded to its longest member.
    fn score_part(&self, histories: &[&[u32]], output: &Tensor) -> Result<Tensor> {
        let inputs: Vec<Vec<u32>> = histories.iter().map(|h| self.scoring_input(h)).collect();
        let ids = pad_left(&inputs, self.cfg.pad(), &Device::Cpu)?;
        self.score_last_against(&ids, output)
    }

    /// The attention mask: each sequence's left padding (padding only leads: [`pad_left`]), and
    /// whether the future is off.
    fn key_mask(&self, ids: &Tensor) -> Result<KeyMask> {
        let pad = self.cfg.pad();
        let mut pads = Vec::new();
        for row in ids.to_vec2::<u32>()? {
            let leading = row.iter().take_while(|&&id| id == pad).count();
            if row[leading..].contains(&pad) {
                candle_core::bail!("padding inside a sequence: inference pads on the left only");
            }
            pads.push(leading);
        }
        Ok(KeyMask {
            pads,
            causal: self.cfg.architecture.causal(),
        })
    }
}

/// Left-pads sequences with `pad` to the longest one: a u32 tensor `(B, T)`.
pub fn pad_left(seqs: &[Vec<u32>], pad: u32, device: &Device) -> Result<Tensor> {
    let t = seqs.iter().map(Vec::len).max().unwrap_or(0);
    if t == 0 {
        candle_core::bail!("cannot pad an empty batch or empty sequences");
    }
    let mut ids = Vec::with_capacity(seqs.len() * t);
    for s in seqs {
        ids.extend(std::iter::repeat_n(pad, t - s.len()));
        ids.extend_from_slice(s);
    }
    Tensor::from_vec(ids, (seqs.len(), t), device)
}

/// Re-draws every parameter of `varmap` from `seed` (candle's CPU generator cannot be seeded):
/// 1-D `*weight` (layer-norm scales) to one, other 1-D tensors (biases) to zero, matrices
/// from a normal with standard deviation 0.02 truncated at two deviations.
pub fn reinitialise(varmap: &VarMap, seed: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("the parameter map lock is poisoned".to_string()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let n = shape.elem_count();
        let values: Vec<f32> = if shape.rank() == 1 {
            let v = if name.ends_with("weight") { 1.0 } else { 0.0 };
            vec![v; n]
        } else {
            (0..n)
                .map(|_| {
                    loop {
                        // Truncated at two standard deviations.
                        let z = standard_normal(&mut rng);
                        if z.abs() <= 2.0 {
                            break (z * 0.02) as f32;
                        }
                    }
                })
                .collect()
        };
        var.set(&Tensor::from_vec(values, shape, &Device::Cpu)?)?;
    }
    Ok(())
}

/// One draw of a standard normal from `rng` (Box-Muller).
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    use rand::RngExt;
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
