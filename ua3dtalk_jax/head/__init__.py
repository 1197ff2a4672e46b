"""The trained model that training, inference and evaluation share.

workdir.py        `Workdir`: every file of a training workdir, its subject, the version check and
                  `load_trained` (→ `trained.TrainedModel`)
render.py         a branch and the fused frame (face over mouth over torso/background)
stage1_model.py   the trained stage 1 and its checkpoint; stage2_model.py the trained heads
features.py       per-frame f_exp, f_tone, f_emo-attn from audio and a stage 1 (prior.py,
                  emotion.py, face_prior.py: the frozen modules at inference), or the subject's
                  UA-3DTalk extras
emotion_control.py  f_emo-attn from a label: class means, emotion specs and the CLI's flags
crops.py          Wav2Lip face crops (stage 1's SyncNet input)
validation.py     the training validator's PNG strips
checkpoint.py     orbax checkpoints (atomic, keep-last-k) and atomic JSON
"""
