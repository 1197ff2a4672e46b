"""Prior Extraction models (paper §2.1): SyncNet, lip expert, expression prior, StyleNet, FuseNet."""

from ua3dtalk_jax.models.prior.expression_prior import ExpressionPrior
from ua3dtalk_jax.models.prior.fuse import FuseNet
from ua3dtalk_jax.models.prior.lip_expert import LipExpert
from ua3dtalk_jax.models.prior.stylenet import StyleNet
from ua3dtalk_jax.models.prior.syncnet import SyncNet

__all__ = ["ExpressionPrior", "FuseNet", "LipExpert", "StyleNet", "SyncNet"]
