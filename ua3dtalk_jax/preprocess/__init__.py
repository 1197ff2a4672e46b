"""Raw talking video → subject directory (MediaPipe, pip packages only). Never imported by training.

Modules, in data-flow order: video (probe, decode, crop, audio) → landmarks (face mesh, smoothing,
dlib-68 map) → pose (canonical shape, rigid fit, focal, cameras) → expression (PCA basis, blink) →
masks (landmark polygons, person segmentation, background plate) → pipeline (resumable steps
writing through `data.writer.SubjectWriter`) → mead (MEAD's release layout → one subject).
native_log (MediaPipe's and ffmpeg's raw lines → a debug log) is light and also used by the
synthetic generator.
"""
