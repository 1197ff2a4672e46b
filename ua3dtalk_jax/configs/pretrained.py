"""Which of the paper's pretrained parts a run uses, and what it puts in their place.

The paper's stage 1 rests on four things a researcher brings (nothing is downloaded):

    stage1.syncnet.pretrained          Wav2Lip's lipsync_expert.pth (Prior Extraction's SyncNet)
    stage1.prior.face_recon_weights    SadTalker's / Deep3DFaceRecon's epoch_20.pth (f_exp)
    stage1.emotion.wav2vec_weights     a Hugging Face wav2vec 2.0 folder (CA-MSER's waveform branch)
    stage1.emotion.corpus              iemocap:<root> (Emotion Distillation's pre-training corpus)

Each field is a path (or `iemocap:<root>`), or the explicit substitute: `none` for a weights file
(train that part on the subject instead), `synthetic` or `subject` for the corpus; "" is `none`
(the `cpu` and `tiny` presets, and workdirs written before this module). The `paper` preset holds
`required` in all four: a run that trains stage 1 refuses until each is given or substituted, with
the option and both choices named (`resolve`). Every run then prints one line per substitute
(`substitutes`) and writes them to summary.json, so a result is never mistaken for the paper's
method.
"""

from __future__ import annotations

REQUIRED = "required"
NONE = "none"
# (section, field, what it is, how to give it, the substitute's value, what the substitute does)
FIELDS = (
    (
        "syncnet",
        "pretrained",
        "Prior Extraction's SyncNet",
        "/path/lipsync_expert.pth",
        NONE,
        "SyncNet trained on the subject",
    ),
    (
        "prior",
        "face_recon_weights",
        "Prior Extraction's 3D expression network",
        "/path/epoch_20.pth (Deep3DFaceRecon)",
        NONE,
        "f_exp from a regressor trained on the subject's tracked expression",
    ),
    (
        "emotion",
        "wav2vec_weights",
        "Emotion Distillation's wav2vec 2.0",
        "/path/wav2vec2-base (a Hugging Face folder)",
        NONE,
        "wav2vec 2.0's convolutional feature encoder trained from scratch, no transformer",
    ),
    (
        "emotion",
        "corpus",
        "Emotion Distillation's pre-training corpus",
        "iemocap:/path/IEMOCAP_full_release",
        "synthetic",
        "pre-trained on the synthetic emotional-speech corpus, not IEMOCAP",
    ),
)
_GROUP = {
    "syncnet": "Prior Extraction",
    "prior": "Prior Extraction",
    "emotion": "Emotion Distillation",
}


def _key(section: str, field: str) -> str:
    return f"stage1.{section}.{field}"


def resolve(stage1_cfg, *, trains_stage1: bool = True) -> None:
    """Refuses `required` fields of a run that trains stage 1 and turns `none` into "" (in place).

    Args:
      stage1_cfg: config.stage1.
      trains_stage1: False when stage 1 is not trained here (it exists, or stage 2 reads the
        subject's precomputed features): `required` then reads as not given.
    Raises:
      ValueError naming the option, how to give it and how to substitute it.
    """
    for section, field, what, how, substitute, does in FIELDS:
        node = stage1_cfg[section]
        value = str(node.get(field, ""))
        if value == REQUIRED:
            if trains_stage1:
                raise ValueError(
                    f"{_key(section, field)}: the paper preset uses {what}; pass "
                    f"--set={_key(section, field)}={how}, or --set={_key(section, field)}="
                    f"{substitute} for the substitute ({does})"
                )
            node[field] = ""
        elif value == NONE and substitute == NONE:
            node[field] = ""


def substitute_required(stage1_cfg) -> list[str]:
    """Sets every `required` field to its substitute (in place), for tools that measure the
    networks rather than reproduce the paper (the benchmarks); returns the `--set` lines applied.
    Call `resolve` afterwards, as for any config."""
    applied = []
    for section, field, _, _, substitute, _ in FIELDS:
        node = stage1_cfg[section]
        if str(node.get(field, "")) == REQUIRED:
            node[field] = substitute
            applied.append(f"{_key(section, field)}={substitute}")
    return applied


def substitutes(stage1_cfg, *, source: str = "stage1") -> list[str]:
    """One line per part of stage 1 that is not the paper's (after `resolve`).

    Args:
      stage1_cfg: config.stage1 (resolved).
      source: `stage1.features.source`; "subject" means stage 2 reads the subject's precomputed
        UA-3DTalk features and no part of this project's stage 1 is used.
    """
    if source == "subject":
        return [
            (
                "Prior Extraction and Emotion Distillation: the subject's precomputed UA-3DTalk "
                "features (stage1.features.source=subject); this project's stage 1 is not used"
            )
        ]
    out = []
    for section, field, what, _, _, does in FIELDS:
        value = str(stage1_cfg[section].get(field, ""))
        if field == "corpus":
            if value.startswith("iemocap:"):
                continue
            does = (
                "pre-trained on the subject's own labelled frames, not IEMOCAP"
                if value == "subject"
                else does
            )
        elif value:
            continue
        out.append(f"{_GROUP[section]}: {does} (no {what}: {_key(section, field)})")
    return out
