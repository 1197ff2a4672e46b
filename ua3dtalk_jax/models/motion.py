"""Uncertainty-based deformation network (paper §2.3, Eq. 3, Fig. 2): one module, two roles.

`MotionNetwork(spec)` maps the static Gaussian centres H and one frame's inputs to the deformation
δ = {Δμ, Δr, Δs} (Eq. 3). The face and mouth branches are the FACE and MOUTH `MotionSpec`s:

  views  face:  audio+eye (38 ⊕ xyz enc), f_exp (64 ⊕ xyz), f_tone (64 ⊕ xyz), f_emotion (192)
         mouth: audio (32 ⊕ xyz), f_exp (64 ⊕ xyz), f_tone (64 ⊕ xyz)
  fusion one uncertainty block per view (Eq. 7–11) → Gaussian fusion (Eq. 12)
  heads  face: Δμ (×1e-2), Δr, Δs;  mouth: Δμ only (×1e-2, x and z a further /5)

Ablation switches (paper Table 2) are spec fields: `prior` (P: the f_exp and f_tone views),
`emotion` (E: the f_emotion view; face only) and `uncertainty` (U; off = the baseline's plain
concatenation of the views into one MLP). Every combination initialises and runs.

Batching: one call is one frame — xyz (N, 3) and a `FrameInputs` of per-frame arrays without a
batch axis. The training loop maps over frames with `jax.vmap(apply, in_axes=(None, None, 0))`
(params and xyz shared) and an rng per frame.

Modes: "train" draws one member per view and step (independently per view, from `rng`) and uses
diagonal variances and the diagonal fusion (the authors' stage 1); "eval" runs all T members with
full covariances (stage 2: training after 15k iterations, fine-tuning and inference).
"""

from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from ua3dtalk_jax.models.audio_net import AudioView
from ua3dtalk_jax.models.emotion_encoder import EmotionEncoder
from ua3dtalk_jax.models.heads import ConcatMLPHeads, DeformHeads
from ua3dtalk_jax.models.hexplane import HexPlaneField
from ua3dtalk_jax.models.uncertainty import (
    FUSIONS,
    UncertaintyBlock,
    ensemble_fusion_chunked,
    ensemble_fusion_lowrank,
    ensemble_moments,
    gaussian_fusion_diag,
    gaussian_fusion_weighted,
)

MODES = ("train", "eval")
# Most time steps per frame window: AudioNet's four stride-2 convs reduce any 1..16 to 1
# (DeepSpeech/esperanto and our mel windows have 16, HuBERT's 2, per-frame vectors 1).
AUDIO_STEPS = 16


@flax.struct.dataclass
class FrameInputs:
    """One frame's conditioning (add a leading axis and vmap for several frames).

    Attributes:
      aud: (W, Wa, F) audio feature windows of the W = 8 frames around this one (Wa ≤ 16).
      au_exp: (6,) [AU01, AU04, AU05, AU06, AU07, clip(AU45, 0, 2)].
      f_exp: (64,) expression prior (paper §2.1).
      f_tone: (64,) person-specific tone feature.
      f_emo: (128,) emotion-attended audio embedding f_emo-attn (§2.2).
    """

    aud: jax.Array
    au_exp: jax.Array
    f_exp: jax.Array
    f_tone: jax.Array
    f_emo: jax.Array


@flax.struct.dataclass
class DeformOut:
    """Per-Gaussian modifications; zeros for outputs a branch does not predict.

    Attributes:
      d_xyz: (N, 3) added to the centres.
      d_rot: (N, 4) added to the raw quaternion (w, x, y, z) before normalisation.
      d_scale: (N, 3) added to the raw (pre-softplus) scales.
    """

    d_xyz: jax.Array
    d_rot: jax.Array
    d_scale: jax.Array


@dataclasses.dataclass(frozen=True)
class MotionSpec:
    """Role, ablation switches and sizes of a `MotionNetwork` (hashable; a Module field)."""

    name: str = "face"
    eye: bool = True  # eye/AU path in the audio view
    channel_attention: bool = True  # per-Gaussian gating of the audio code
    outputs: tuple[str, ...] = ("xyz", "rot", "scale")
    xyz_scale: tuple[float, float, float] = (1e-2, 1e-2, 1e-2)
    zero_init: tuple[str, ...] = ()  # heads whose last layer starts at zero (identity deformation)
    prior: bool = True  # P
    emotion: bool = True  # E
    uncertainty: bool = True  # U
    audio_dim: int = 32
    grid_bound: float = 0.15
    grid_res: int = 64
    grid_multires: tuple[int, ...] = (1, 2, 4, 8)
    grid_channels: int = 16
    emo_dim: int = 64
    emo_res: int = 64
    emo_multires: tuple[int, ...] = (1, 2, 4)
    hidden: int = 64
    latent: int = 48
    members: int = 10
    # eval-mode Eq. 10–12: "dense" covariances, "lowrank" (Woodbury), or "mean" (inference only:
    # the fused μ alone, `ensemble_fused_mean`; the aux dict then holds no variances or weights)
    fusion: str = "dense"

    @property
    def view_names(self) -> tuple[str, ...]:
        return (
            ("audio",)
            + (("exp", "tone") if self.prior else ())
            + (("emotion",) if self.emotion else ())
        )

    def replace(self, **kw) -> MotionSpec:
        return dataclasses.replace(self, **kw)


FACE = MotionSpec()
MOUTH = MotionSpec(
    name="mouth",
    eye=False,
    channel_attention=False,
    outputs=("xyz",),
    xyz_scale=(1e-2 / 5, 1e-2, 1e-2 / 5),
    emotion=False,
)


class MotionNetwork(nn.Module):
    """Static centres + one frame's inputs → (DeformOut, intermediates)."""

    spec: MotionSpec = FACE

    @nn.compact
    def __call__(
        self, xyz: jax.Array, inputs: FrameInputs, *, mode: str = "eval", rng=None
    ) -> tuple[DeformOut, dict]:
        """Predicts the deformation of N Gaussians for one frame.

        Args:
          xyz: (N, 3) static Gaussian centres.
          inputs: one frame's `FrameInputs`.
          mode: "train" (one random member per view, diagonal fusion) or "eval" (all members).
          rng: PRNG key, required in "train" mode with U on (member draws).
        Returns:
          DeformOut and intermediates: "view_mu" (V, N, D), "aleatoric" and "epistemic" (V, N)
          (mean variance per latent dimension, i.e. trace / D), "view_weights" (V, N),
          "fused_mu" (N, D), "fused_var" (N,), "members" (V,) (drawn in train mode, −1 in eval),
          "aud_ch_att_norm" (N,), "eye_att_norm" (N,), "time_att" (W,). The view order is
          `spec.view_names`; the uncertainty entries are absent with U off.
        """
        sp = self.spec
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "train" and sp.uncertainty and rng is None:
            raise ValueError('mode="train" draws ensemble members: pass rng=')
        chex.assert_shape(xyz, (None, 3))
        chex.assert_rank(inputs.aud, 3)
        if not 1 <= inputs.aud.shape[1] <= AUDIO_STEPS:
            raise ValueError(f"aud windows of {inputs.aud.shape[1]} steps; at most {AUDIO_STEPS}")
        chex.assert_shape(inputs.au_exp, (6,))
        chex.assert_rank([inputs.f_exp, inputs.f_tone, inputs.f_emo], 1)
        n = xyz.shape[0]

        grid = HexPlaneField(
            sp.grid_bound, sp.grid_res, sp.grid_multires, sp.grid_channels, name="xyz_grid"
        )
        enc_x, _ = grid(xyz)
        audio, aux = AudioView(sp.audio_dim, sp.channel_attention, sp.eye, name="audio")(
            inputs.aud, inputs.au_exp, enc_x
        )
        aux = {k: aux[k] for k in ("aud_ch_att_norm", "eye_att_norm", "time_att")}
        # (features, whether the xyz encoding is appended) per view, in `view_names` order.
        views = [(audio, True)]
        if sp.prior:
            views += [
                (jnp.broadcast_to(f, (n, f.shape[0])), True) for f in (inputs.f_exp, inputs.f_tone)
            ]
        if sp.emotion:
            encoder = EmotionEncoder(
                sp.emo_dim, sp.grid_bound, sp.emo_res, sp.emo_multires, name="emotion"
            )
            views.append((encoder(inputs.f_emo, xyz)[0], False))
        scales = (("xyz", sp.xyz_scale), ("rot", (1.0,) * 4), ("scale", (1.0,) * 3))

        if sp.uncertainty:
            fused, uaux = self._fuse(views, enc_x, mode, rng)
            aux.update(uaux)
            heads = DeformHeads(sp.outputs, scales, sp.hidden, sp.zero_init, name="decoder")
            out, _ = heads(fused, enc_x)
        else:
            concat = jnp.concatenate([f for f, _ in views] + [enc_x], axis=-1)
            heads = ConcatMLPHeads(
                sp.outputs, scales, sp.hidden, zero_init=sp.zero_init, name="decoder"
            )
            out, _ = heads(concat)

        zeros = lambda k: jnp.zeros((n, k), xyz.dtype)
        deform = DeformOut(
            d_xyz=out["xyz"], d_rot=out.get("rot", zeros(4)), d_scale=out.get("scale", zeros(3))
        )
        return deform, aux

    def _fuse(self, views, enc_x, mode, rng) -> tuple[jax.Array, dict]:
        """Uncertainty blocks per view and their Gaussian fusion (Eq. 7–12)."""
        sp = self.spec
        if mode == "eval" and sp.fusion in ("lowrank", "mean"):
            xs = [jnp.concatenate([f, enc_x], axis=-1) if x else f for f, x in views]
            if self.is_initializing():  # creates the blocks' parameters (same names as "dense")
                outs = [
                    UncertaintyBlock(sp.hidden, sp.latent, sp.members, name=f"unc_{v}")(x)
                    for v, x in zip(sp.view_names, xs)
                ]
                aux = ensemble_fusion_lowrank(*(jnp.stack(z) for z in zip(*outs)))
            else:
                block = UncertaintyBlock(sp.hidden, sp.latent, sp.members, parent=None)
                params = [self.variables["params"][f"unc_{v}"] for v in sp.view_names]
                aux = ensemble_fusion_chunked(block, params, xs, mean_only=sp.fusion == "mean")
            aux["members"] = jnp.full((len(views),), -1, jnp.int32)
            return aux["fused_mu"], aux
        mus, second, alea, epi, members = [], [], [], [], []
        for v, (name, (feat, with_x)) in enumerate(zip(sp.view_names, views)):
            x = jnp.concatenate([feat, enc_x], axis=-1) if with_x else feat
            block = UncertaintyBlock(sp.hidden, sp.latent, sp.members, name=f"unc_{name}")
            if mode == "train":
                member = jax.random.randint(jax.random.fold_in(rng, v), (), 0, sp.members)
                mu, logvar = block(x, member)
                var = jnp.exp(logvar[0])
                mus.append(mu[0])
                second.append(var)
                alea.append(jnp.mean(var, axis=-1))
                epi.append(jnp.zeros_like(alea[-1]))
                members.append(member)
            else:
                mean, cov, e, a = ensemble_moments(*block(x))
                mus.append(mean)
                second.append(cov)
                d = mean.shape[-1]
                alea.append(jnp.trace(a, axis1=-2, axis2=-1) / d)
                epi.append(jnp.trace(e, axis1=-2, axis2=-1) / d)
                members.append(jnp.asarray(-1))
        means = jnp.stack(mus)
        if mode == "train":
            fused, fused_var, weights = gaussian_fusion_diag(means, jnp.stack(second))
            fused_var = jnp.mean(fused_var, axis=-1)
        else:
            fused, fused_cov, weights = gaussian_fusion_weighted(means, jnp.stack(second))
            fused_var = jnp.trace(fused_cov, axis1=-2, axis2=-1) / fused.shape[-1]
        aux = {
            "view_mu": means,
            "aleatoric": jnp.stack(alea),
            "epistemic": jnp.stack(epi),
            "view_weights": weights,
            "fused_mu": fused,
            "fused_var": fused_var,
            "members": jnp.stack(members).astype(jnp.int32),
        }
        return fused, aux


def motion_spec(cfg, part: str) -> MotionSpec:
    """Builds the FACE or MOUTH spec from a `configs.model.model_config(...)` ConfigDict.

    Args:
      cfg: the model config (its hexplane, emotion, uncertainty, audio, decoder and ablation
        sections are read).
      part: "face" or "mouth".
    Returns:
      the spec; the mouth never has the emotion view, whatever the E switch says. The decoder
      section (`decoder.<part>`: xyz_gain multiplies the Δμ scale, zero_init names the heads that
      start at zero, channel_attention gates the face's audio code).
    """
    if part not in ("face", "mouth"):
        raise ValueError(f"part must be 'face' or 'mouth', got {part!r}")
    fusion = cfg.uncertainty.fusion
    if fusion not in FUSIONS:
        raise ValueError(f"model.uncertainty.fusion = {fusion!r}; choose one of {FUSIONS}")
    base = FACE if part == "face" else MOUTH
    dec = cfg.decoder[part]
    gain = float(dec.xyz_gain)
    return base.replace(
        xyz_scale=tuple(gain * s for s in base.xyz_scale),
        zero_init=tuple(dec.zero_init),
        channel_attention=bool(dec.channel_attention),
        prior=bool(cfg.ablation.prior),
        emotion=bool(cfg.ablation.emotion) and part == "face",
        uncertainty=bool(cfg.ablation.uncertainty),
        audio_dim=cfg.audio.dim,
        grid_bound=cfg.hexplane.bound,
        grid_res=cfg.hexplane.base_res,
        grid_multires=tuple(cfg.hexplane.multires),
        grid_channels=cfg.hexplane.channels,
        emo_dim=cfg.emotion.dim,
        emo_res=cfg.emotion.base_res,
        emo_multires=tuple(cfg.emotion.multires),
        hidden=cfg.uncertainty.hidden,
        latent=cfg.uncertainty.latent,
        members=cfg.uncertainty.members,
        fusion=fusion,
    )
