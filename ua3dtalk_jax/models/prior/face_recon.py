"""Deep3DFaceRecon's coefficient regressor, as SadTalker uses it (paper §2.1: f_exp, f_gt-exp).

`ReconNetWrapper(net_recon="resnet50", use_last_fc=False)` of Deep3DFaceRecon_pytorch
(models/networks.py): torchvision's ResNet-50 without its fc, then seven 1×1 convs on the pooled
2048-vector whose outputs are concatenated into the 257 coefficients

    c = [W_id; W_exp; W_tex; W_angle; W_gamma; W_txy; W_tz] · avgpool(ResNet(img)) + b
      = id 80 | exp 64 | tex 80 | angle 3 | gamma 27 | trans 3          (`COEFFS`)

The paper's f_exp (on lip-expert frames) and f_gt-exp (on real frames) are c[80:144].

Input: RGB in [0, 1], NHWC, 224², aligned by `face_align.align_face` — Deep3DFaceRecon's
`read_data` and SadTalker's `CropAndExtract` pass `np.array(img) / 255.` with no mean/std
normalisation. Batch norm in eval mode (running statistics, eps 1e-5), as `net_recon.eval()`.

`load_face_recon(path)` reads a Deep3DFaceRecon / SadTalker checkpoint without torch
(`data.torch_file`): `{"net_recon": state_dict, ...}` (`epoch_20.pth`; its optimizer state and
other entries are ignored), a bare state dict, or SadTalker's safetensors (`face_3drecon.` keys).
Keys are torchvision's, under `backbone.` (`backbone.layer3.4.bn2.running_var`, ...) plus
`final_layers.{0..6}.{weight,bias}`; a `module.` prefix is dropped. The stem width, the widths and
block counts of the stages and the bottleneck expansion are read from the file (ResNet-50: 64;
64, 128, 256, 512; 3, 4, 6, 3; ×4), so a reduced-width copy loads too; every tensor's shape is
checked against the network they imply, and errors name the file and the tensor.

Layout: torch convs (O, I, kh, kw) become Flax kernels (kh, kw, I, O); the seven heads become one
Dense `head` (2048, 257) in `COEFFS` order. Stages sow their outputs into the "intermediates"
collection (stem after the max pool, layer1..4, pooled) for layer-by-layer checks.
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ua3dtalk_jax.data.torch_file import read_checkpoint

COEFFS = (("id", 80), ("exp", 64), ("tex", 80), ("angle", 3), ("gamma", 27), ("trans", 3))
HEADS = (80, 64, 80, 3, 27, 2, 1)  # the seven final 1×1 convs (trans split into xy, z)
N_COEFFS = sum(HEADS)  # 257
EXP = slice(80, 144)  # f_exp / f_gt-exp
IMAGE_SIZE = 224
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default
_PREFIXES = ("module.", "net_recon.", "face_3drecon.")  # DataParallel, nested dict, SadTalker
_BLOCK = re.compile(r"^backbone\.layer(\d+)\.(\d+)\.")


def coeff_slices() -> dict[str, slice]:
    """{"id": slice(0, 80), "exp": slice(80, 144), ...} over the 257 coefficients."""
    out, a = {}, 0
    for name, n in COEFFS:
        out[name] = slice(a, a + n)
        a += n
    return out


def _conv(features: int, k: int, stride: int, name: str) -> nn.Conv:
    return nn.Conv(
        features,
        (k, k),
        (stride, stride),
        padding=[(k // 2, k // 2)] * 2,
        use_bias=False,
        name=name,
    )


def _bn(name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name=name)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: the stride on the 3×3 conv)."""

    width: int
    out: int
    stride: int
    downsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.relu(_bn("bn1")(_conv(self.width, 1, 1, "conv1")(x)))
        y = nn.relu(_bn("bn2")(_conv(self.width, 3, self.stride, "conv2")(y)))
        y = _bn("bn3")(_conv(self.out, 1, 1, "conv3")(y))
        if self.downsample:
            x = _bn("downsample_bn")(_conv(self.out, 1, self.stride, "downsample_conv")(x))
        return nn.relu(y + x)


class FaceReconNet(nn.Module):
    """ResNet backbone + the seven coefficient heads. Defaults: Deep3DFaceRecon's ResNet-50."""

    stem: int = 64
    widths: tuple = (64, 128, 256, 512)
    blocks: tuple = (3, 4, 6, 3)
    expansion: int = 4

    @nn.compact
    def __call__(self, img: jax.Array) -> jax.Array:
        """Coefficients of aligned faces.

        Args:
          img: (B, 224, 224, 3) float32 RGB in [0, 1] (`face_align.align_face` output / 255).
        Returns:
          (B, 257) float32: id 80, exp 64, tex 80, angle 3, gamma 27, trans 3.
        """
        if img.ndim != 4 or img.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(
                f"FaceReconNet: img must be (B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) "
                f"RGB in [0, 1], got {img.shape}"
            )
        x = nn.relu(
            _bn("bn1")(
                nn.Conv(
                    self.stem, (7, 7), (2, 2), padding=[(3, 3)] * 2, use_bias=False, name="conv1"
                )(img)
            )
        )
        x = nn.max_pool(x, (3, 3), (2, 2), padding=[(1, 1)] * 2)
        self.sow("intermediates", "stem", x)
        for i, j, width, out, stride, down in block_plan(self):
            x = Bottleneck(width, out, stride, down, name=f"layer{i}_{j}")(x)
            if j == self.blocks[i - 1] - 1:
                self.sow("intermediates", f"layer{i}", x)
        pooled = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "pooled", pooled)
        return nn.Dense(N_COEFFS, name="head")(pooled)


def block_plan(net: FaceReconNet) -> list[tuple]:
    """(stage i ≥ 1, block j ≥ 0, width, out channels, stride, has downsample) of every block,
    as torchvision's `_make_layer` builds them."""
    plan, cin = [], net.stem
    for i, (w, n) in enumerate(zip(net.widths, net.blocks), start=1):
        for j in range(n):
            stride = 2 if i > 1 and j == 0 else 1
            out = w * net.expansion
            plan.append((i, j, w, out, stride, j == 0 and (stride != 1 or cin != out)))
            cin = out
    return plan


def net_recon_state_dict(obj, path: str) -> dict[str, np.ndarray]:
    """The regressor's {key: array} from a checkpoint object, keys without their prefixes.

    Accepts {"net_recon": sd, ...}, a bare sd, and flat dicts whose keys carry `net_recon.` /
    `face_3drecon.` (SadTalker's safetensors: only those keys are kept) or `module.`.
    """
    if isinstance(obj, dict) and isinstance(obj.get("net_recon"), dict):
        obj = obj["net_recon"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a Deep3DFaceRecon checkpoint")
    sd = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, np.ndarray)}
    for tag in ("face_3drecon.", "net_recon."):  # a file holding several networks: take ours
        if any(k.startswith(tag) for k in sd):
            sd = {k: v for k, v in sd.items() if k.startswith(tag)}
    out = {}
    for k, v in sd.items():
        while k.startswith(_PREFIXES):
            k = k.split(".", 1)[1]
        out[k] = v
    if "backbone.conv1.weight" not in out or "final_layers.0.weight" not in out:
        raise ValueError(
            f"{path}: not a Deep3DFaceRecon net_recon (no backbone.conv1.weight / "
            f"final_layers.0.weight among {len(out)} tensors, e.g. {sorted(out)[:3]})"
        )
    return out


def layout_from_state_dict(sd: dict, path: str) -> FaceReconNet:
    """The `FaceReconNet` whose sizes the state dict's keys and shapes imply."""
    blocks: dict[int, int] = {}
    for k in sd:
        m = _BLOCK.match(k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            blocks[i] = max(blocks.get(i, 0), j + 1)
    if not blocks or sorted(blocks) != list(range(1, len(blocks) + 1)):
        raise ValueError(f"{path}: backbone stages {sorted(blocks)}, expected layer1..layerN")
    if "backbone.layer1.0.conv3.weight" not in sd:
        raise ValueError(
            f"{path}: backbone.layer1.0.conv3.weight missing: not a bottleneck "
            "ResNet (Deep3DFaceRecon's resnet50)"
        )
    widths = tuple(int(sd[f"backbone.layer{i}.0.conv1.weight"].shape[0]) for i in sorted(blocks))
    expansion = int(sd["backbone.layer1.0.conv3.weight"].shape[0]) // widths[0]
    counts = tuple(blocks[i] for i in sorted(blocks))
    stem = int(sd["backbone.conv1.weight"].shape[0])
    return FaceReconNet(stem=stem, widths=widths, blocks=counts, expansion=expansion)


def _torch_names(net: FaceReconNet) -> list[tuple[tuple, str, str]]:
    """(flax path, torch key, kind) for every tensor; kind ∈ conv, bn.<field>, head."""
    bn = (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var"))
    names = [(("conv1",), "backbone.conv1.weight", "conv")]
    names += [(("bn1", f), f"backbone.bn1.{t}", "bn") for f, t in bn]
    for i, j, *_, down in block_plan(net):
        name, tk = f"layer{i}_{j}", f"backbone.layer{i}.{j}."
        parts = [
            ("conv1", "bn1", "conv1", "bn1"),
            ("conv2", "bn2", "conv2", "bn2"),
            ("conv3", "bn3", "conv3", "bn3"),
        ]
        if down:
            parts.append(("downsample_conv", "downsample_bn", "downsample.0", "downsample.1"))
        for fc, fb, tc, tb in parts:
            names.append(((name, fc), tk + tc + ".weight", "conv"))
            names += [((name, fb, f), f"{tk}{tb}.{t}", "bn") for f, t in bn]
    return names


def params_from_state_dict(sd: dict, net: FaceReconNet, path: str) -> dict:
    """Torch state dict → Flax variables {"params", "batch_stats"} of `net`, shapes checked.

    Raises:
      ValueError: naming the file and the tensor that is missing, of the wrong shape, or unknown.
    """
    like = jax.eval_shape(
        net.init, jax.random.PRNGKey(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32)
    )
    out = {"params": {}, "batch_stats": {}}
    used = set()

    def take(key: str, want: tuple) -> np.ndarray:
        if key not in sd:
            raise ValueError(f"{path}: tensor {key} missing (a {net_name(net)} needs it)")
        v = np.asarray(sd[key], np.float32)
        used.add(key)
        if v.shape != want:
            raise ValueError(
                f"{path}: tensor {key} has shape {v.shape}, expected {want} ({net_name(net)})"
            )
        return v

    for fpath, key, kind in _torch_names(net):
        if kind == "conv":
            hwio = _get(like["params"], (*fpath, "kernel")).shape
            w = take(key, (hwio[3], hwio[2], hwio[0], hwio[1]))
            _set(out["params"], (*fpath, "kernel"), np.transpose(w, (2, 3, 1, 0)))
        else:
            coll = "batch_stats" if fpath[-1] in ("mean", "var") else "params"
            n = _get(like[coll], fpath).shape
            _set(out[coll], fpath, take(key, n))
    c = net.widths[-1] * net.expansion
    ws = [take(f"final_layers.{i}.weight", (n, c, 1, 1))[:, :, 0, 0] for i, n in enumerate(HEADS)]
    bs = [take(f"final_layers.{i}.bias", (n,)) for i, n in enumerate(HEADS)]
    out["params"]["head"] = {"kernel": np.concatenate(ws).T, "bias": np.concatenate(bs)}
    extra = sorted(k for k in set(sd) - used if not k.endswith("num_batches_tracked"))
    if extra:
        raise ValueError(
            f"{path}: {len(extra)} tensors that a {net_name(net)} does not have, "
            f"e.g. {', '.join(extra[:3])}"
        )
    got = jax.tree.map(np.shape, out)
    want = jax.tree.map(lambda a: tuple(a.shape), like)
    if got != want:  # every Flax variable filled once, at its shape (a converter bug otherwise)
        raise AssertionError(f"face_recon converter: variables {got} do not match {want}")
    return jax.tree.map(jnp.asarray, out)


def net_name(net: FaceReconNet) -> str:
    return (
        f"ResNet (stem {net.stem}, widths {net.widths}, blocks {net.blocks}, "
        f"×{net.expansion}) with {len(HEADS)} heads"
    )


def _get(tree: dict, path: tuple):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: dict, path: tuple, value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def load_face_recon(path: str) -> tuple[FaceReconNet, dict]:
    """Deep3DFaceRecon's regressor from a user's checkpoint (SadTalker's `epoch_20.pth`).

    Args:
      path: torch file (zip or legacy) or safetensors; see the module docstring.
    Returns:
      (model, variables): `model.apply(variables, img)` maps (B, 224, 224, 3) RGB in [0, 1] to
      the (B, 257) coefficients (id 80, exp 64, tex 80, angle 3, gamma 27, trans 3).
    Raises:
      FileNotFoundError: no such file.
      ValueError: not such a checkpoint, or a tensor missing / misshapen / unknown (named).
    """
    sd = net_recon_state_dict(read_checkpoint(path), path)
    net = layout_from_state_dict(sd, path)
    return net, params_from_state_dict(sd, net, path)
