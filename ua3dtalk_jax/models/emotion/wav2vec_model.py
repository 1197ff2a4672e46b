"""wav2vec 2.0 (Baevski et al. 2020) in Flax: what Hugging Face's `Wav2Vec2Model` computes (eval).

The waveform branch of CA-MSER (paper §2.2). Eval mode throughout: no dropout, no SpecAugment
masking, no LayerDrop, no attention mask (every window is full length). With raw input values
x (B, S), HF's `input_values`:

  feature encoder   L conv layers (conv_dim/conv_kernel/conv_stride, bias iff conv_bias), each
                    followed by the feat_extract_activation (GELU). feat_extract_norm "group"
                    (wav2vec2-base): GroupNorm with one group per channel (statistics over time)
                    after the first conv only; "layer" (large-lv60): LayerNorm over channels after
                    every conv. Both norms have torch's default eps 1e-5.   → c (B, F, C)
  feature projection  e = LayerNorm_eps(c) (HF's `extract_features`); h = e W + b  → (B, F, H)
  positional conv   p = act(conv(h)) with a weight-normed grouped conv (kernel K =
                    num_conv_pos_embeddings, groups = num_conv_pos_embedding_groups, padding K//2
                    each side), the last frame dropped when K is even (HF's SamePad)
  encoder           post-LN (do_stable_layer_norm = False, base):
                      h = LN(h + p); per layer: h = LN1(h + Attn(h)); h = LN2(h + FFN(h))
                    pre-LN (do_stable_layer_norm = True, large):
                      h = h + p; per layer: h = h + Attn(LN1(h)); h = h + FFN(LN2(h));
                      finally h = LN(h)
  Attn: multi-head self-attention, softmax(q kᵀ / √d_head) v, with biased q/k/v/out projections;
  FFN: intermediate_dense → hidden_act → output_dense. LayerNorms use layer_norm_eps.

hidden_states follow HF 4.x: (input of layer 1, output of layer 1, …, output of layer N) for the
post-LN encoder, whose last entry is the last hidden state; for the pre-LN encoder the inputs of
layers 1…N and then the final-LayerNorm output. Module and parameter names mirror HF's state-dict
keys (`layers_3` ↔ `layers.3`) so that `wav2vec.params_from_state_dict` maps keys by name.
Matmuls and convs run at `precision="highest"` so GPUs do not drop to TF32 (torch keeps float32
matmuls exact by default); on CPU it changes nothing.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

TORCH_NORM_EPS = 1e-5  # torch's GroupNorm/LayerNorm default, used by the conv layers' norms
# HF ACT2FN names → JAX; "gelu" is the exact (erf) GELU, the *_new/tanh names the tanh form.
ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class Wav2Vec2Config:
    """The fields of HF's `Wav2Vec2Config` that shape the eval-mode model (defaults: base's)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> Wav2Vec2Config:
        """A config from a parsed HF `config.json` (other keys ignored); checked.

        Raises:
          ValueError: naming `source` and the field, for a model this module does not compute
            (another model_type, adapters) or inconsistent sizes.
        """
        kind = d.get("model_type", "wav2vec2")
        if kind != "wav2vec2":
            raise ValueError(f"{source}: model_type {kind!r}, not 'wav2vec2'")
        if d.get("add_adapter", False) or d.get("adapter_attn_dim") is not None:
            raise ValueError(
                f"{source}: wav2vec 2.0 with adapters (add_adapter/adapter_attn_dim) "
                "is not supported"
            )
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                kw[f.name] = tuple(int(x) for x in v) if isinstance(v, list | tuple) else v
        cfg = cls(**kw)
        cfg.check(source)
        return cfg

    def check(self, source: str = "config") -> None:
        """Raises ValueError (naming `source` and the field) where the sizes do not fit together."""
        n = len(self.conv_dim)
        if n == 0 or len(self.conv_kernel) != n or len(self.conv_stride) != n:
            raise ValueError(
                f"{source}: conv_dim, conv_kernel and conv_stride must have one "
                f"equal, non-zero length, got {self.conv_dim}, {self.conv_kernel}, "
                f"{self.conv_stride}"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(
                f"{source}: feat_extract_norm {self.feat_extract_norm!r}, not 'group' or 'layer'"
            )
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(
                    f"{source}: {name} {getattr(self, name)!r} is not one of {sorted(ACTIVATIONS)}"
                )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(
                f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                f"num_conv_pos_embedding_groups {self.num_conv_pos_embedding_groups}"
            )

    def n_frames(self, n_samples: int) -> int:
        """Frames the feature encoder gives for `n_samples` (base: 48000 → 149, 16000 → 49)."""
        n = int(n_samples)
        for k, s in zip(self.conv_kernel, self.conv_stride, strict=True):
            n = (n - k) // s + 1 if n >= k else 0
        return n

    def min_samples(self) -> int:
        """The shortest input that gives one frame (base: 400 samples, 25 ms)."""
        n = 1
        for k, s in reversed(tuple(zip(self.conv_kernel, self.conv_stride, strict=True))):
            n = (n - 1) * s + k
        return n


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
    # two-pass variance, as torch computes it (flax's default E[x²] − E[x]² loses digits)
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


class ConvLayer(nn.Module):
    """A feature-encoder layer: VALID conv, optional norm, activation; (B, T, C_in) → (B, T', C)."""

    features: int
    kernel: int
    stride: int
    bias: bool
    norm: str  # "group" (one group per channel), "layer" or "none"
    act: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(
            self.features,
            (self.kernel,),
            (self.stride,),
            padding="VALID",
            use_bias=self.bias,
            precision="highest",
            name="conv",
        )(x)
        if self.norm == "group":
            x = nn.GroupNorm(
                num_groups=self.features,
                epsilon=TORCH_NORM_EPS,
                use_fast_variance=False,
                name="layer_norm",
            )(x)
        elif self.norm == "layer":
            x = _layer_norm(TORCH_NORM_EPS, "layer_norm")(x)
        return ACTIVATIONS[self.act](x)


class FeatureEncoder(nn.Module):
    """The conv feature encoder: (B, S) raw samples → (B, F, conv_dim[-1])."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, wav: jax.Array) -> jax.Array:
        c = self.config
        x = wav[..., None]
        for i, (f, k, s) in enumerate(zip(c.conv_dim, c.conv_kernel, c.conv_stride, strict=True)):
            norm = "layer" if c.feat_extract_norm == "layer" else ("group" if i == 0 else "none")
            x = ConvLayer(
                f, k, s, c.conv_bias, norm, c.feat_extract_activation, name=f"conv_layers_{i}"
            )(x)
        return x


class PositionalConvEmbedding(nn.Module):
    """Grouped conv positional embedding (its weight is the weight-normed g·v/‖v‖, folded in)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        c = self.config
        k = c.num_conv_pos_embeddings
        p = nn.Conv(
            c.hidden_size,
            (k,),
            padding=((k // 2, k // 2),),
            feature_group_count=c.num_conv_pos_embedding_groups,
            precision="highest",
            name="conv",
        )(h)
        if k % 2 == 0:  # HF's Wav2Vec2SamePadLayer: padding k//2 gives one frame too many
            p = p[:, :-1]
        return ACTIVATIONS[c.feat_extract_activation](p)


class SelfAttention(nn.Module):
    """Multi-head self-attention with HF's q_proj/k_proj/v_proj/out_proj; (B, T, H) → (B, T, H)."""

    hidden: int
    heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        d = self.hidden // self.heads
        proj = lambda name: nn.Dense(self.hidden, precision="highest", name=name)
        q, k, v = (proj(n)(x).reshape(b, t, self.heads, d) for n in ("q_proj", "k_proj", "v_proj"))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision="highest") * d**-0.5
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v, precision="highest")
        return proj("out_proj")(out.reshape(b, t, self.hidden))


class FeedForward(nn.Module):
    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        x = nn.Dense(c.intermediate_size, precision="highest", name="intermediate_dense")(x)
        x = ACTIVATIONS[c.hidden_act](x)
        return nn.Dense(c.hidden_size, precision="highest", name="output_dense")(x)


class EncoderLayer(nn.Module):
    """One transformer layer, post-LN (base) or pre-LN (`do_stable_layer_norm`)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        c = self.config
        attn = SelfAttention(c.hidden_size, c.num_attention_heads, name="attention")
        ln1 = _layer_norm(c.layer_norm_eps, "layer_norm")
        ffn = FeedForward(c, name="feed_forward")
        ln2 = _layer_norm(c.layer_norm_eps, "final_layer_norm")
        if c.do_stable_layer_norm:
            h = h + attn(ln1(h))
            return h + ffn(ln2(h))
        h = ln1(h + attn(h))
        return ln2(h + ffn(h))


class Encoder(nn.Module):
    """Positional conv, encoder LayerNorm and the N layers → (last hidden state, hidden_states)."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, h: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        c = self.config
        h = h + PositionalConvEmbedding(c, name="pos_conv_embed")(h)
        norm = _layer_norm(c.layer_norm_eps, "layer_norm")
        if not c.do_stable_layer_norm:
            h = norm(h)
        states = []
        for i in range(c.num_hidden_layers):
            states.append(h)
            h = EncoderLayer(c, name=f"layers_{i}")(h)
        if c.do_stable_layer_norm:
            h = norm(h)
        return h, (*states, h)


class FeatureProjection(nn.Module):
    """HF's feature projection: (LayerNorm(x), Linear(LayerNorm(x)))."""

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        c = self.config
        e = _layer_norm(c.layer_norm_eps, "layer_norm")(x)
        return e, nn.Dense(c.hidden_size, precision="highest", name="projection")(e)


class Wav2Vec2Model(nn.Module):
    """HF's `Wav2Vec2Model` in eval mode (module docstring).

    `model.apply(variables, wav)` → last hidden state (B, F, hidden_size) float32 for raw input
    values wav (B, S) float32, F = `config.n_frames(S)`. With `output_hidden_states=True` it returns
    {"last_hidden_state": (B, F, H), "hidden_states": tuple of N + 1 (B, F, H) (module docstring),
    "extract_features": (B, F, conv_dim[-1]) the layer-normed conv features (HF's)}.
    """

    config: Wav2Vec2Config

    @nn.compact
    def __call__(self, wav: jax.Array, output_hidden_states: bool = False):
        c = self.config
        if wav.ndim != 2:
            raise ValueError(f"wav2vec 2.0 input: want (batch, samples), got shape {wav.shape}")
        if wav.shape[1] < c.min_samples():
            raise ValueError(
                f"wav2vec 2.0 input: {wav.shape[1]} samples, fewer than the "
                f"{c.min_samples()} that give one frame"
            )
        x = FeatureEncoder(c, name="feature_extractor")(jnp.asarray(wav, jnp.float32))
        extract, h = FeatureProjection(c, name="feature_projection")(x)
        last, states = Encoder(c, name="encoder")(h)
        if output_hidden_states:
            return {"last_hidden_state": last, "hidden_states": states, "extract_features": extract}
        return last
