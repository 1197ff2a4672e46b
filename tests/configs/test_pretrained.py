"""The paper preset's pretrained parts (`configs.pretrained`): required or explicitly substituted,
and every substitute named, so that no result is mistaken for the paper's method."""

import pytest

from ua3dtalk_jax.configs import apply_overrides, get_config, pretrained

SUBSTITUTES = [
    "stage1.syncnet.pretrained=none",
    "stage1.prior.face_recon_weights=none",
    "stage1.emotion.wav2vec_weights=none",
    "stage1.emotion.corpus=synthetic",
]


def test_the_paper_preset_refuses_each_missing_part_naming_both_choices():
    given = []
    for option, how in [
        ("stage1.syncnet.pretrained", "lipsync_expert.pth"),
        ("stage1.prior.face_recon_weights", "epoch_20.pth"),
        ("stage1.emotion.wav2vec_weights", "wav2vec2-base"),
        ("stage1.emotion.corpus", "iemocap:/path/IEMOCAP_full_release"),
    ]:
        cfg = apply_overrides(get_config("paper"), given)
        with pytest.raises(
            ValueError,
            match=rf"{option}: the paper preset uses .*--set={option}="
            rf".*{how}.*, or --set={option}=",
        ):
            pretrained.resolve(cfg.stage1)
        given.append(f"{option}=/data/{how}" if ":" not in how else f"{option}={how}")
    cfg = apply_overrides(get_config("paper"), given)
    pretrained.resolve(cfg.stage1)
    assert cfg.stage1.syncnet.pretrained == "/data/lipsync_expert.pth"
    assert pretrained.substitutes(cfg.stage1) == []  # the paper's method


def test_explicit_substitutes_are_resolved_and_each_named():
    cfg = apply_overrides(get_config("paper"), SUBSTITUTES)
    pretrained.resolve(cfg.stage1)
    assert cfg.stage1.syncnet.pretrained == "" and cfg.stage1.emotion.wav2vec_weights == ""
    assert cfg.stage1.emotion.corpus == "synthetic"
    lines = pretrained.substitutes(cfg.stage1)
    assert lines == [
        (
            "Prior Extraction: SyncNet trained on the subject (no Prior Extraction's SyncNet: "
            "stage1.syncnet.pretrained)"
        ),
        (
            "Prior Extraction: f_exp from a regressor trained on the subject's tracked expression "
            "(no Prior Extraction's 3D expression network: stage1.prior.face_recon_weights)"
        ),
        (
            "Emotion Distillation: wav2vec 2.0's convolutional feature encoder trained from scratch, "
            "no transformer (no Emotion Distillation's wav2vec 2.0: stage1.emotion.wav2vec_weights)"
        ),
        (
            "Emotion Distillation: pre-trained on the synthetic emotional-speech corpus, not IEMOCAP "
            "(no Emotion Distillation's pre-training corpus: stage1.emotion.corpus)"
        ),
    ]
    assert pretrained.substitutes(get_config("cpu").stage1) == lines  # cpu: substitutes by default
    subject = apply_overrides(get_config("cpu"), ["stage1.emotion.corpus=subject"])
    assert "the subject's own labelled frames" in pretrained.substitutes(subject.stage1)[3]
    only = pretrained.substitutes(get_config("paper").stage1, source="subject")
    assert len(only) == 1 and "stage1.features.source=subject" in only[0]


def test_without_training_stage_1_required_reads_as_not_given():
    cfg = get_config("paper")
    pretrained.resolve(cfg.stage1, trains_stage1=False)
    assert cfg.stage1.syncnet.pretrained == "" and cfg.stage1.emotion.corpus == ""


def test_substitute_required_fills_only_what_is_missing():
    cfg = apply_overrides(get_config("paper"), ["stage1.emotion.corpus=iemocap:/data/IEMOCAP"])
    applied = pretrained.substitute_required(cfg.stage1)
    assert applied == SUBSTITUTES[:3]
    pretrained.resolve(cfg.stage1)  # nothing left to refuse
    assert cfg.stage1.emotion.corpus == "iemocap:/data/IEMOCAP"
    assert pretrained.substitute_required(cfg.stage1) == []
