//! The model's own CPU kernels: candle ops with a backward pass where candle 0.11 has none or
//! a slow one (softmax, layer norm, GELU, batched attention products, fused cross-entropy).

pub(crate) mod fused;
mod gelu_kernel;
pub mod loss;
pub(crate) mod matmul;
