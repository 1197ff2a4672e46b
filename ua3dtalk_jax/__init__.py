"""ua3dtalk_jax: a JAX/Flax reimplementation of UA-3DTalk.

Uncertainty-aware 3D emotional talking-face synthesis with emotion prior
distillation, with a Gaussian-splatting rasterizer written as C++/CUDA kernels
behind the XLA FFI (see `ua3dtalk_jax.render`).
"""

__version__ = "0.1.0"
