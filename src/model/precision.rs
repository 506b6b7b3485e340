//! The arithmetic of inference: f32 everywhere, or the dense layers and the scores in bf16 where the
//! CPU has AVX-512 BF16 (see `ops::bf16_dense`). Training is always f32.

use std::fmt;

use super::ModelError;

/// What a loaded model computes its dense layers in; serialized as its [`name`](Self::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    /// The name `/models`, answers and logs show.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an operator asks for (`RECSYS_PRECISION`, `--precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PrecisionChoice {
    /// bf16 where the CPU has AVX-512 BF16, f32 elsewhere.
    #[default]
    Auto,
    /// f32 everywhere.
    F32,
    /// bf16; an error where the CPU lacks the instructions.
    Bf16,
}

impl PrecisionChoice {
    /// The precision this CPU runs for the choice.
    pub fn resolve(self) -> Result<Precision, ModelError> {
        let bf16 = super::ops::bf16_dense::supported();
        match self {
            PrecisionChoice::F32 => Ok(Precision::F32),
            PrecisionChoice::Auto if bf16 => Ok(Precision::Bf16),
            PrecisionChoice::Auto => Ok(Precision::F32),
            PrecisionChoice::Bf16 if bf16 => Ok(Precision::Bf16),
            PrecisionChoice::Bf16 => Err(ModelError::Bf16Unsupported),
        }
    }

    /// The precisions `choices` run here, each once, in order (`f32,auto` is one precision on a
    /// CPU without bf16).
    pub fn resolve_all(choices: &[PrecisionChoice]) -> Result<Vec<Precision>, ModelError> {
        let mut out = Vec::with_capacity(choices.len());
        for choice in choices {
            let precision = choice.resolve()?;
            if !out.contains(&precision) {
                out.push(precision);
            }
        }
        Ok(out)
    }
}

/// Whether this CPU can run bf16 inference.
pub fn bf16_supported() -> bool {
    super::ops::bf16_dense::supported()
}
