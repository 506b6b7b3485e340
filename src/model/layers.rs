//! Building blocks: layer norm with a backward pass, linear layers over flattened rows,
//! multi-head self-attention (one op that leaves the masked keys out, in training and at
//! inference), and the pre-norm encoder block.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::ModelConfig;
use super::Precision;
use super::dropout::{DropoutRng, dropout};
use super::ops::attention::{self, KeyMask};
use super::ops::attention_train::{AttentionDropout, attend_train};
use super::ops::bf16_dense::PackedBf16;
use super::ops::fused::{add_row, gelu, gelu_inference, layer_norm, layer_norm_inference};
use super::ops::matmul::matmul_t;

/// Layer normalisation with a backward pass (candle's fused `LayerNorm` has none): one op of
/// [`super::ops::fused`], scale and shift included.
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn load(vb: VarBuilder, size: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?,
            eps: 1e-12,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        layer_norm(xs, &self.weight, &self.bias, self.eps as f32)
    }

    /// The same without recording a backward pass: inference only.
    pub(crate) fn forward_inference(&self, xs: &Tensor) -> Result<Tensor> {
        layer_norm_inference(xs, &self.weight, &self.bias, self.eps as f32)
    }
}

/// A dense layer applied to rows `(N, in)`: a matmul, then the bias added by
/// [`add_row`](super::ops::fused::add_row), whose backward pass sums the rows contiguously.
pub(crate) struct Linear {
    weight: Tensor,
    bias: Tensor,
    /// The weight and bias in bf16 for inference, when the model runs in bf16.
    packed: Option<PackedBf16>,
}

impl Linear {
    pub(crate) fn load(vb: VarBuilder, input: usize, output: usize) -> Result<Self> {
        let inner = candle_nn::linear(input, output, vb)?;
        let Some(bias) = inner.bias().cloned() else {
            candle_core::bail!("a dense layer without a bias");
        };
        Ok(Self {
            weight: inner.weight().clone(),
            bias,
            packed: None,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        add_row(&matmul_t(xs, &self.weight)?, &self.bias)
    }

    /// Inference: in bf16 when packed, else [`forward`](Self::forward).
    pub(crate) fn infer(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.packed {
            Some(packed) => packed.dense(xs),
            None => self.forward(xs),
        }
    }

    /// Runs inference in `precision`. bf16 packs the weights (the layer must not train after);
    /// `false` where the CPU lacks the instructions.
    pub(crate) fn set_precision(&mut self, precision: Precision) -> Result<bool> {
        self.packed = match precision {
            Precision::F32 => None,
            Precision::Bf16 => match PackedBf16::new(&self.weight, &self.bias)? {
                Some(packed) => Some(packed),
                None => return Ok(false),
            },
        };
        Ok(true)
    }
}

/// Multi-head self-attention: the dense projections, then one attention op that leaves the
/// masked keys out ([`attend_train`] in training, [`attention::attend`] at inference).
struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    heads: usize,
    head_dim: usize,
    dropout: f32,
}

impl SelfAttention {
    fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let h = cfg.hidden;
        Ok(Self {
            query: Linear::load(vb.pp("query"), h, h)?,
            key: Linear::load(vb.pp("key"), h, h)?,
            value: Linear::load(vb.pp("value"), h, h)?,
            output: Linear::load(vb.pp("output"), h, h)?,
            heads: cfg.heads,
            head_dim: h / cfg.heads,
            dropout: cfg.dropout,
        })
    }

    /// `xs`: rows `(B*T, H)`; `mask`: each sequence's padding, and whether the future is off.
    fn forward(
        &self,
        xs: &Tensor,
        bt: (usize, usize),
        mask: &KeyMask,
        rng: Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        self.attend(xs, bt, Pass::Train { rng, mask })
    }

    /// Inference: no dropout and no backward pass. With
    /// `last_only` only the last row of each sequence is a query and the result is `(B, H)`
    /// (otherwise `(B*T, H)`, as `forward`); every row is still a key and a value.
    fn infer(
        &self,
        xs: &Tensor,
        bt: (usize, usize),
        mask: &KeyMask,
        last_only: bool,
    ) -> Result<Tensor> {
        self.attend(xs, bt, Pass::Infer { last_only, mask })
    }

    fn attend(&self, xs: &Tensor, (b, t): (usize, usize), pass: Pass<'_>) -> Result<Tensor> {
        let last_only = matches!(
            pass,
            Pass::Infer {
                last_only: true,
                ..
            }
        );
        let (queries, rows) = if last_only {
            (last_rows(xs, (b, t))?, 1)
        } else {
            (xs.clone(), t)
        };
        let split = |x: Tensor, rows: usize| -> Result<Tensor> {
            x.reshape((b, rows, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let inferring = matches!(pass, Pass::Infer { .. });
        let dense = |layer: &Linear, xs: &Tensor| {
            if inferring {
                layer.infer(xs)
            } else {
                layer.forward(xs)
            }
        };
        let q = split(dense(&self.query, &queries)?, rows)?;
        let k = split(dense(&self.key, xs)?, t)?;
        let v = split(dense(&self.value, xs)?, t)?;
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let (bh, hd) = (b * self.heads, self.head_dim);
        let (q, k, v) = (
            q.reshape((bh, rows, hd))?,
            k.reshape((bh, t, hd))?,
            v.reshape((bh, t, hd))?,
        );
        let ctx = match pass {
            Pass::Train { rng, mask } => {
                let dropout = rng.map(|rng| AttentionDropout {
                    p: self.dropout,
                    seed: rng.next_seed(),
                });
                attend_train(&q, &k, &v, self.heads, mask.clone(), scale, dropout)?
            }
            Pass::Infer { mask, .. } => attention::attend(&q, &k, &v, self.heads, mask, scale)?,
        };
        let ctx = ctx
            .reshape((b, self.heads, rows, hd))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * rows, self.heads * self.head_dim))?;
        dense(&self.output, &ctx)
    }

    fn linears_mut(&mut self) -> [&mut Linear; 4] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.output,
        ]
    }
}

/// How attention runs: training (backward pass, dropout when a generator is given) or
/// inference.
enum Pass<'a> {
    Train {
        rng: Option<&'a mut DropoutRng>,
        mask: &'a KeyMask,
    },
    Infer {
        last_only: bool,
        mask: &'a KeyMask,
    },
}

/// The last row of each sequence of rows `(B*T, H)`: `(B, H)`.
pub(crate) fn last_rows(xs: &Tensor, (b, t): (usize, usize)) -> Result<Tensor> {
    let h = xs.dim(1)?;
    xs.reshape((b, t, h))?
        .narrow(1, t - 1, 1)?
        .reshape((b, h))?
        .contiguous()
}

/// One transformer block, pre-norm: `x + drop(attn(ln(x)))`, then `x + drop(ffn(ln(x)))` with a
/// GELU feed-forward of 4× hidden.
pub(crate) struct EncoderBlock {
    attention: SelfAttention,
    attention_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
    dropout: f32,
}

impl EncoderBlock {
    pub(crate) fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let h = cfg.hidden;
        Ok(Self {
            attention: SelfAttention::load(vb.pp("attention"), cfg)?,
            attention_norm: LayerNorm::load(vb.pp("attention_norm"), h)?,
            ffn_in: Linear::load(vb.pp("ffn_in"), h, 4 * h)?,
            ffn_out: Linear::load(vb.pp("ffn_out"), 4 * h, h)?,
            ffn_norm: LayerNorm::load(vb.pp("ffn_norm"), h)?,
            dropout: cfg.dropout,
        })
    }

    /// `xs`: rows `(B*T, H)`; returns the same shape.
    pub(crate) fn forward(
        &self,
        xs: &Tensor,
        bt: (usize, usize),
        mask: &KeyMask,
        mut rng: Option<&mut DropoutRng>,
    ) -> Result<Tensor> {
        let normed = self.attention_norm.forward(xs)?;
        let attended = self
            .attention
            .forward(&normed, bt, mask, rng.as_deref_mut())?;
        let xs = (xs + dropout(&attended, self.dropout, rng.as_deref_mut())?)?;
        let normed = self.ffn_norm.forward(&xs)?;
        let inner = gelu(&self.ffn_in.forward(&normed)?)?;
        let inner = dropout(&inner, self.dropout, rng.as_deref_mut())?;
        let out = self.ffn_out.forward(&inner)?;
        xs + dropout(&out, self.dropout, rng)?
    }

    /// Inference: [`forward`](Self::forward) without dropout, with the fused layer norm and
    /// softmax (no backward pass). With `last_only` the result is the last row of each sequence,
    /// `(B, H)`, and the attention query, the feed-forward and the norms run for that row alone.
    pub(crate) fn infer(
        &self,
        xs: &Tensor,
        bt: (usize, usize),
        mask: &KeyMask,
        last_only: bool,
    ) -> Result<Tensor> {
        let normed = self.attention_norm.forward_inference(xs)?;
        let attended = self.attention.infer(&normed, bt, mask, last_only)?;
        let xs = if last_only {
            last_rows(xs, bt)?
        } else {
            xs.clone()
        };
        let xs = (xs + attended)?;
        let normed = self.ffn_norm.forward_inference(&xs)?;
        let inner = gelu_inference(&self.ffn_in.infer(&normed)?)?;
        let out = self.ffn_out.infer(&inner)?;
        xs + out
    }

    /// The block's dense layers, for [`Linear::set_precision`].
    pub(crate) fn linears_mut(&mut self) -> impl Iterator<Item = &mut Linear> {
        let [q, k, v, o] = self.attention.linears_mut();
        [q, k, v, o, &mut self.ffn_in, &mut self.ffn_out].into_iter()
    }
}
