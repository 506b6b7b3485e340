//! The model's own CPU kernels: candle ops with a backward pass where candle 0.11 has none or
//! a slow one (softmax, layer norm, GELU, batched attention products, fused cross-entropy), and
//! inference's attention with the mask applied by leaving keys out.

pub(crate) mod attention;
pub(crate) mod attention_train;
pub(crate) mod bf16_dense;
pub(crate) mod fused;
mod gelu_kernel;
pub mod loss;
pub(crate) mod matmul;
pub(crate) mod scoring;
