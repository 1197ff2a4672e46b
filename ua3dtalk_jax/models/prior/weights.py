"""Converter of a user-provided pretrained Wav2Lip SyncNet (`lipsync_expert.pth`) to SyncNet params.

Nothing is downloaded. The file is a torch checkpoint {"state_dict": …} (or a bare state dict)
whose keys are `face_encoder.<i>.conv_block.0.{weight,bias}` (conv) and
`face_encoder.<i>.conv_block.1.{weight,bias,running_mean,running_var}` (BatchNorm), likewise
`audio_encoder.<i>…`. It is read **without torch** by `data.torch_file.read_state_dict`: the
torch ≥ 1.6 zip format, the legacy pre-1.6 format (Wav2Lip pins torch 1.1, which writes it) and
safetensors, through a restricted unpickler that only rebuilds tensors.

Each BatchNorm is folded into its conv (eval mode, eps 1e-5):
    s = γ / √(σ² + eps),   W' = W · s,   b' = (b − μ) · s + β
so the result is the params of `SyncNet(face_specs, audio_specs, norm="none", calibrated=False)`
with the paper preset's (= Wav2Lip's) layer specs, convs transposed OIHW → HWIO
(`wav2lip_syncnet` builds that module with the widths read from the file).

Input conventions of the pretrained net (Wav2Lip's `color_syncnet_train.py`):
  * faces were read with cv2, i.e. **BGR**; the crops here are RGB, so by default (`rgb=True`)
    the first face conv's input channels are reversed within each frame's three, and the
    converted net takes this project's RGB stacks (`syncnet.stack_lower_halves`) unchanged;
  * the mel window paired with the 5 faces starting at frame s starts at frame s + 1
    (`crop_audio_window` converts to 1-indexing): `WAV2LIP_MEL_OFFSET`. A caller scoring
    in-sync pairs with a loaded net should read `mel[s + WAV2LIP_MEL_OFFSET]`;
  * faces are S3FD boxes (bottom padded by 10 px) resized to 96², lower half 48×96, in [0, 1].
"""

from __future__ import annotations

import re

import numpy as np

from ua3dtalk_jax.configs.stage1 import wav2lip_audio_specs, wav2lip_face_specs
from ua3dtalk_jax.data.torch_file import read_state_dict
from ua3dtalk_jax.models.prior.syncnet import SyncNet

BN_EPS = 1e-5
WAV2LIP_MEL_OFFSET = 1  # frames; see the module docstring
RGB = 3  # colour channels per stacked face frame
FACE_STAGE_FIRST_BLOCK = (0, 1, 4, 8, 11)  # face convs that set the widths c0..c4
_KEY = re.compile(r"^(?:module\.)?(face_encoder|audio_encoder)\.(\d+)\.conv_block\.([01])\.(\w+)$")


def syncnet_params_from_state_dict(state_dict: dict, rgb: bool = True) -> dict:
    """Wav2Lip SyncNet state dict (numpy) → params of SyncNet(norm="none", calibrated=False).

    Args:
      state_dict: {key: array} with the keys of the module docstring ("module." prefixes allowed).
      rgb: reverse the colour order of the first face conv's inputs (BGR-trained → RGB input).
    Returns:
      {"face_encoder": {"ConvBlock_j": {"Conv_0": {"kernel" (kh, kw, in, out), "bias"}}}, ...}.
    """
    layers: dict = {}
    for k, v in state_dict.items():
        m = _KEY.match(k)
        if m:
            enc, idx, part, name = m.groups()
            layers.setdefault(enc, {}).setdefault(int(idx), {})[(part, name)] = np.asarray(v)
    if set(layers) != {"face_encoder", "audio_encoder"}:
        raise ValueError("not a Wav2Lip SyncNet state dict (no face_encoder/audio_encoder convs)")
    out = {}
    for enc, by_idx in layers.items():
        out[enc] = {}
        for j, idx in enumerate(sorted(by_idx)):  # dropout entries leave index gaps
            p = by_idx[idx]
            w, b = p[("0", "weight")], p[("0", "bias")]
            s = p[("1", "weight")] / np.sqrt(p[("1", "running_var")] + BN_EPS)
            kernel = np.transpose(w * s[:, None, None, None], (2, 3, 1, 0)).astype(np.float32)
            bias = ((b - p[("1", "running_mean")]) * s + p[("1", "bias")]).astype(np.float32)
            if rgb and enc == "face_encoder" and j == 0:
                kernel = kernel[:, :, bgr_to_rgb_channels(kernel.shape[2])]
            out[enc][f"ConvBlock_{j}"] = {"Conv_0": {"kernel": kernel, "bias": bias}}
    return out


def bgr_to_rgb_channels(n: int) -> np.ndarray:
    """Channel permutation of n = 3T stacked frames that reverses each frame's colour order."""
    if n % RGB:
        raise ValueError(f"the first face conv has {n} input channels, not 3 per frame")
    f = np.arange(n) // RGB
    return RGB * f + (RGB - 1 - np.arange(n) % RGB)


def load_wav2lip_syncnet(path: str, rgb: bool = True) -> dict:
    """Reads `lipsync_expert.pth` (or any Wav2Lip colour-SyncNet checkpoint) → SyncNet params."""
    state_dict = read_state_dict(path)
    try:
        return syncnet_params_from_state_dict(state_dict, rgb)
    except (KeyError, ValueError) as e:  # a block without its BatchNorm, ...: name the file
        raise ValueError(f"{path}: {e}") from None


def wav2lip_syncnet(path: str, rgb: bool = True):
    """The frozen-expert SyncNet module and its params from a user-provided Wav2Lip checkpoint.

    The widths are read from the file (Wav2Lip's: 32, 64, 128, 256, 512); the module is the paper
    preset's layer list with BatchNorm folded (norm "none"), raw cosine (uncalibrated, uncentred),
    i.e. Wav2Lip's own forward. Inputs: (B, 80, 16) mel windows, (B, 48, 96, 15) RGB lower faces.

    Returns:
      (SyncNet, params) for `SyncNet.apply({"params": params}, mel, faces)`.
    """
    params = load_wav2lip_syncnet(path, rgb)
    face = params["face_encoder"]
    widths = tuple(
        int(face[f"ConvBlock_{j}"]["Conv_0"]["kernel"].shape[-1]) for j in FACE_STAGE_FIRST_BLOCK
    )
    if len(face) != len(wav2lip_face_specs(widths)):
        raise ValueError(f"{path}: {len(face)} face convs, Wav2Lip's colour SyncNet has 17")
    model = SyncNet(wav2lip_face_specs(widths), wav2lip_audio_specs(widths), norm="none")
    return model, params
