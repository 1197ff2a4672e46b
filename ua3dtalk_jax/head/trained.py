"""A trained model as one value: config, both branches, the subject, the frozen stage 1.

`Workdir.load_trained` returns it; inference (`infer.trained_model`), the notebook API and the
evaluation tools read it.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from ua3dtalk_jax.audio import precomputed
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.head.stage1_model import Stage1Model


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedModel:
    """A trained workdir (read-only).

    Attributes:
      cfg: the run's resolved config (workdir/config.json).
      heads: {"face" | "mouth": (MotionNetwork, params, GaussianState)} pytrees.
      subject: the `data.Subject` it was trained on (fps, size, cameras, torso frames).
      stage1: the frozen `head.stage1_model.Stage1Model` (features of novel audio); None when
        loaded for evaluation only (`Workdir.load_trained(drivable=False)`).
      workdir: the workdir's path.
    """

    cfg: ml_collections.ConfigDict
    heads: dict
    subject: Subject
    stage1: Stage1Model | None
    workdir: str

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every rendered frame."""
        return self.subject.size

    @property
    def fps(self) -> float:
        return self.subject.fps

    @property
    def audio_kind(self) -> str:
        """The kind of stage-2 audio windows it was trained on (`audio.precomputed.KINDS`)."""
        return self.cfg.data.audio_feature

    @property
    def needs_audio_features(self) -> bool:
        """Whether new audio needs its precomputed windows beside it (not our mel windows)."""
        return self.audio_kind in precomputed.FILES

    def view_names(self, part: str) -> tuple[str, ...]:
        """The fused views of a branch, in the order of the V axis of `Deformed.aux`."""
        return self.heads[part][0].spec.view_names
