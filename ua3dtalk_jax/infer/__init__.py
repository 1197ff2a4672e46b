"""Inference: new audio (+ optional emotion) → frames → mp4, from a trained workdir.

trained_model.py  the frame-by-frame path: audio features, conditioning, deform, render
synthesize.py     a whole clip to a video with its audio track; the CLI's emotion flags
poses.py          camera / AU / torso schedules (the subject's val frames, static, a pose file)
"""
