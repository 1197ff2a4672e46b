"""configs.migrate: a saved config of any version reads as this version's; a newer one is refused."""

import json

import pytest

from tests.configs.legacy import tiny_resolved, write_version0
from ua3dtalk_jax.configs import PRESETS, get_config
from ua3dtalk_jax.configs.io import as_saved, load_config, save_config, saved_config, saved_stage1
from ua3dtalk_jax.configs.migrate import VERSION, VERSION_KEY, migrate


@pytest.mark.parametrize("preset", PRESETS)
def test_a_config_of_this_version_reads_back_unchanged(preset, tmp_path):
    cfg = get_config(preset)
    path = save_config(cfg, str(tmp_path))
    with open(path) as f:
        assert json.load(f)[VERSION_KEY] == VERSION
    assert saved_config(str(tmp_path)) == as_saved(cfg)
    assert as_saved(load_config(str(tmp_path))) == as_saved(cfg)


def test_version_0_reads_as_this_version_whatever_it_lacks_or_kept(tmp_path):
    def old(d):
        d["data"].update(audio_feature="auto", fps=25, seed=0, shuffle=True, keys=None)
        del d["model"]["decoder"], d["model"]["uncertainty"]["fusion"], d["stage1"]["features"]
        for part in ("face", "mouth"):
            d["model"]["gaussians"][part]["densify_every"] = d["train"][part]["densify_every"]
        for sub, key in (
            ("syncnet", "mel_offset"),
            ("lip_expert", "audio_norm"),
            ("stylenet", "frame_mlp"),
            ("fuse", "exp_dropout"),
        ):
            del d["stage1"][sub][key]

    write_version0(str(tmp_path), old)
    cfg = load_config(str(tmp_path))
    assert cfg.data.audio_feature == "mel" and "fps" not in cfg.data  # "auto" always meant mel
    assert "densify_every" not in cfg.model.gaussians.face
    assert cfg.model.uncertainty.fusion == "dense" and cfg.model.decoder.face.xyz_gain == 1.0
    decoder = cfg.model.decoder
    assert decoder.face.channel_attention and not decoder.mouth.channel_attention
    assert not cfg.stage1.features.standardise and cfg.stage1.features.source == "stage1"
    assert cfg.stage1.syncnet.mel_offset == 0 and cfg.stage1.lip_expert.audio_norm == "group"
    assert tuple(cfg.stage1.stylenet.frame_mlp) == () and cfg.stage1.fuse.exp_dropout == 0.0
    # the same section from a stage-1 checkpoint written before versions
    s1 = saved_stage1(json.loads(json.dumps(cfg.stage1.to_dict())), 0)
    assert as_saved(s1) == as_saved(cfg.stage1)


def test_a_current_workdir_compares_equal_after_migration(tmp_path):
    write_version0(str(tmp_path))
    assert saved_config(str(tmp_path)) == as_saved(tiny_resolved())


def test_a_newer_version_is_refused():
    with pytest.raises(ValueError, match=f"version {VERSION + 1} is newer"):
        migrate({VERSION_KEY: VERSION + 1})
