"""Stage 1 training (paper §2.1–§2.2): Prior Extraction and Emotion Distillation on one subject.

driver.py    `train_stage1`: the modules in order, their checkpoint (`head.stage1_model`)
data.py      `Stage1Data`: face crops, mel chunks, targets, the emotion stream of a subject
loop.py      the jitted step loop, with per-module checkpoints to resume a stopped run
prior.py     SyncNet, lip expert, expression prior, StyleNet + FuseNet steps
emotion.py   the speech-emotion encoder's pre-training and fine-tuning (Eq. 5)
face.py      Deep3DFaceRecon's references and f_exp score (`stage1.prior.face_recon_weights`)
"""

# `train.config_io.load_config` reads `_config` here; it goes when config_io moves to configs/.
from ua3dtalk_jax.head.stage1_model import _config  # noqa: F401
