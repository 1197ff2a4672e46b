"""Every `--set` key is honoured: each leaf of each preset, set to another valid value through
`apply_overrides`, survives every step that resolves a run's config (the checks, the pretrained
parts' resolution, the feature source, the workdir's config.json written and read back through
`configs.migrate`) with nothing else changed, and the code that consumes it reads it: a copy that
one step rewrote from another (as the densification schedule once was) fails here."""

import json

import pytest

from ua3dtalk_jax.configs import PRESETS, apply_overrides, get_config, pretrained
from ua3dtalk_jax.configs.io import as_saved, load_config, save_config
from ua3dtalk_jax.configs.overrides import RESOLVED, _leaves
from ua3dtalk_jax.gaussians.densify import densify_config
from ua3dtalk_jax.head.features import feature_source
from ua3dtalk_jax.models.motion import motion_spec

# Strings that name a choice: another valid choice (per preset value where it depends).
CHOICES = {
    "preset": {"paper": "cpu", "cpu": "tiny", "tiny": "paper"},
    "backend": "reference",
    "synthetic": {"default": "tiny", "tiny": "default"},
    "data.audio_feature": "mel",
    "model.uncertainty.fusion": {"dense": "lowrank", "lowrank": "dense"},
    "init": {"box": "image", "image": "box"},
    "bg_cleanup": {"prune": "fade", "fade": "prune"},
    "norm": "batch",
    "audio_norm": {"group": "none", "none": "group"},
    "stage1.preset": {"paper": "cpu", "cpu": "tiny", "tiny": "paper"},
    "stage1.syncnet.pretrained": "/weights/lipsync_expert.pth",
    "stage1.prior.face_recon_weights": "/weights/epoch_20.pth",
    "stage1.emotion.wav2vec_weights": "/weights/wav2vec2-base",
    "stage1.emotion.corpus": "iemocap:/data/IEMOCAP",
    "stage1.emotion.iemocap_labels": "all",
    "stage1.features.source": "subject",
}
# Empty tuples: a valid non-empty value.
NON_EMPTY = {"zero_init": ("xyz",), "frame_mlp": (8,)}


def _other(key: str, old):
    """A valid value for `key` that differs from `old`."""
    name = key.rsplit(".", 1)[-1]
    if isinstance(old, bool):
        return not old
    if isinstance(old, int):
        return old + 1  # every count stays ≥ 1 (check_config)
    if isinstance(old, float):
        return old + 0.25
    if isinstance(old, str):
        choice = CHOICES.get(key, CHOICES.get(name))
        return choice[old] if isinstance(choice, dict) else choice
    if isinstance(old, tuple):
        if not old:
            return NON_EMPTY[name]
        return (*old[:-1], _other(key, old[-1]))
    raise AssertionError(f"{key}: no other value for {old!r}")


def _resolved(cfg, workdir: str):
    """The config as a run that does not train stage 1 resolves, saves and reads it back."""
    pretrained.resolve(cfg.stage1, trains_stage1=False)
    feature_source(cfg.stage1.features)
    save_config(cfg, workdir)
    return load_config(workdir)


def _settable(preset: str):
    return [(k, v) for k, v in _leaves(get_config(preset)) if k not in RESOLVED]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_key_survives_resolution_with_nothing_else_changed(preset, tmp_path):
    base = as_saved(_resolved(get_config(preset), str(tmp_path)))
    for key, old in _settable(preset):
        value = _other(key, old)
        assert value != old, key
        got = as_saved(
            _resolved(apply_overrides(get_config(preset), [f"{key}={value!r}"]), str(tmp_path))
        )
        want = json.loads(json.dumps(base))
        node = want
        for part in key.split(".")[:-1]:
            node = node[part]
        node[key.rsplit(".", 1)[-1]] = json.loads(json.dumps(value))
        assert got == want, key


@pytest.mark.parametrize("preset", PRESETS)
def test_the_densification_reads_every_schedule_and_threshold_key(preset):
    for part in ("face", "mouth"):
        keys = [
            (f"train.{part}.{k}", k)
            for k in ("densify_from", "densify_every", "densify_until", "size_prune_from")
        ]
        keys += [
            (f"model.gaussians.{part}.{k}", k)
            for k in (
                "grad_threshold",
                "percent_dense",
                "min_opacity",
                "max_screen_radius",
                "bg_cleanup",
                "bg_fade_scale",
            )
        ]
        for key, field in keys:
            old = dict(_leaves(get_config(preset)))[key]
            cfg = apply_overrides(get_config(preset), [f"{key}={_other(key, old)!r}"])
            got = getattr(densify_config(cfg.model.gaussians[part], cfg.train[part]), field)
            assert got == _other(key, old), key


def test_the_motion_network_reads_its_model_keys():
    for key, field in (
        ("model.hexplane.base_res", "grid_res"),
        ("model.hexplane.bound", "grid_bound"),
        ("model.uncertainty.members", "members"),
        ("model.audio.dim", "audio_dim"),
        ("model.emotion.multires", "emo_multires"),
        ("model.uncertainty.fusion", "fusion"),
    ):
        old = dict(_leaves(get_config("tiny")))[key]
        cfg = apply_overrides(get_config("tiny"), [f"{key}={_other(key, old)!r}"])
        assert getattr(motion_spec(cfg.model, "face"), field) == _other(key, old), key


def test_the_densify_interval_set_by_the_user_is_the_one_used():
    """The report that started this: --set model.gaussians.face.densify_every=5 came back as 10."""
    cfg = apply_overrides(get_config("tiny"), ["train.face.densify_every=5"])
    assert densify_config(cfg.model.gaussians.face, cfg.train.face).densify_every == 5
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides(get_config("tiny"), ["model.gaussians.face.densify_every=5"])


@pytest.mark.parametrize("key", sorted(RESOLVED))
def test_keys_set_from_the_subject_are_refused_with_what_to_set(key):
    want = f"{key} is set from the subject's audio.*data.audio_feature"
    with pytest.raises(ValueError, match=want):
        apply_overrides(get_config("tiny"), [f"{key}=64"])
