"""Stage 2's audio input recorded by a run (`data.stage2_audio`): the kind and window shape go into
the config, a resumed run, evaluation and inference refuse another kind and name the trained one."""

import pytest

from tests.configs.legacy import write_version0
from tests.data import tg_layout
from ua3dtalk_jax.configs import get_config
from ua3dtalk_jax.configs.io import load_config
from ua3dtalk_jax.data import Subject
from ua3dtalk_jax.data.stage2_audio import match_subject, open_for_model, resolve_audio
from ua3dtalk_jax.head.workdir import Workdir

N = 12


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tg")
    tg_layout.write_tg_subject(str(root), N, aud_hu=True)
    return root


def test_auto_resolves_to_the_kind_loaded_and_its_window_shape(folder):
    cfg = get_config("tiny")
    assert cfg.data.audio_feature == "auto" and (cfg.model.audio.steps, cfg.model.audio.in_dim) == (
        16,
        32,
    )
    line = resolve_audio(cfg.data, cfg.model.audio, Subject.open(str(folder)))
    assert cfg.data.audio_feature == "deepspeech"
    assert (cfg.model.audio.steps, cfg.model.audio.in_dim) == (16, 29)
    assert "deepspeech (aud_ds.npy, windows [16, 29])" in line and "aud.wav" in line
    hu = get_config("tiny")
    hu.data.audio_feature = "hubert"
    resolve_audio(hu.data, hu.model.audio, Subject.open(str(folder), audio_feature="hubert"))
    assert (hu.model.audio.steps, hu.model.audio.in_dim) == (2, 1024)


def test_a_model_reopens_its_own_kind_and_refuses_another(folder, tmp_path):
    cfg = get_config("tiny")
    resolve_audio(cfg.data, cfg.model.audio, Subject.open(str(folder)))
    assert open_for_model(str(folder), cfg.data, cfg.model.audio).audio_kind == "deepspeech"
    other = tmp_path / "other"
    tg_layout.write_tg_subject(str(other), N, aud_ds=False)  # the same person, mel only
    with pytest.raises(
        ValueError,
        match=r"trained on deepspeech \(aud_ds.npy, windows \[16, 29\]\)"
        r", but .*aud_ds.npy: missing",
    ):
        open_for_model(str(other), cfg.data, cfg.model.audio)
    cfg.model.audio.in_dim = 44  # a model of other windows than the subject's file holds
    with pytest.raises(ValueError, match=r"aud_ds.npy has windows \[16, 29\], but the model"):
        open_for_model(str(folder), cfg.data, cfg.model.audio)
    mel = get_config("tiny")
    match_subject(mel.data, mel.model.audio, Subject.open(str(other)))  # unresolved: resolves
    assert mel.data.audio_feature == "mel"
    with pytest.raises(ValueError, match=r"its audio is deepspeech .* config says mel"):
        match_subject(mel.data, mel.model.audio, Subject.open(str(folder)))


def test_resume_with_another_kind_names_the_trained_one(folder, tmp_path):
    cfg = get_config("tiny")
    resolve_audio(cfg.data, cfg.model.audio, Subject.open(str(folder)))
    Workdir(str(tmp_path)).check_config(cfg)
    again = get_config("tiny")  # the same flags: auto resolves the same way, so it resumes
    resolve_audio(again.data, again.model.audio, Subject.open(str(folder)))
    Workdir(str(tmp_path)).check_config(again)
    mel = get_config("tiny")
    resolve_audio(mel.data, mel.model.audio, Subject.open(str(folder), audio_feature="mel"))
    want = (
        r"trained on deepspeech \(aud_ds.npy, windows \[16, 29\]\) audio features; this run "
        r"reads mel .*--set=data.audio_feature=deepspeech"
    )
    with pytest.raises(ValueError, match=want):
        Workdir(str(tmp_path)).check_config(mel)


def test_workdirs_from_before_the_resolution_read_as_mel(tmp_path):
    """Their config.json says "auto", and their audio network was always built for mel windows."""
    write_version0(str(tmp_path), lambda d: d["data"].update(audio_feature="auto"))
    assert load_config(str(tmp_path)).data.audio_feature == "mel"
