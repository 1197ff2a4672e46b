"""`--set` overrides and the run-config checks (`configs.overrides`): one-line ValueErrors naming
the key instead of ml_collections' TypeErrors or a division by zero after stage 1."""

import pytest

from ua3dtalk_jax.configs import PRESETS, apply_overrides, check_config, get_config


def test_values_are_parsed_and_converted_to_the_field_type():
    cfg = apply_overrides(
        get_config("tiny"),
        [
            "train.face.iterations=40",
            "seed=3",
            "model.ablation.uncertainty=False",
            "train.lambda_ssim=1",
            "data.audio_feature=mel",
            "stage1.emotion.corpus=iemocap:/data/IEMOCAP",
        ],
    )
    assert cfg.train.face.iterations == 40 and cfg.seed == 3
    assert cfg.model.ablation.uncertainty is False
    assert cfg.train.lambda_ssim == 1.0 and isinstance(cfg.train.lambda_ssim, float)
    assert cfg.data.audio_feature == "mel" and cfg.stage1.emotion.corpus == "iemocap:/data/IEMOCAP"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.face.iterations=abc", r"train.face.iterations takes a int \(like 30\), not 'abc'"),
        ("seed=1.5", r"seed takes a int \(like 0\), not 1.5"),
        ("seed=True", r"seed takes a int"),
        ("model.ablation.uncertainty=1", r"takes a bool \(like True\), not 1"),
        ("train.face=3", r"'train.face' is a section"),
        ("train.face.nope=1", r"unknown config key 'train.face.nope'"),
        ("train.face.iterations", r"expected dotted.key=value"),
        ("train.checkpoint_every=0", r"config train.checkpoint_every=0: must be ≥ 1"),
        ("train.face.iterations=-5", r"config train.face.iterations=-5: must be a finite number"),
        ("data.batch_size=0", r"config data.batch_size=0: must be ≥ 1"),
        ("train.lambda_ssim=float('nan')", r"train.lambda_ssim takes a float"),
        ("train.lambda_ssim=1e999", r"config train.lambda_ssim=inf: must be a finite number ≥ 0"),
    ],
)
def test_bad_overrides_are_one_line_value_errors(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(get_config("tiny"), [override])


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_passes_the_checks(preset):
    check_config(get_config(preset))
