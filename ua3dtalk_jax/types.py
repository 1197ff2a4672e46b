"""Shape letters and small struct pytrees shared by every layer.

Shape letters used in docstrings and `chex` checks across the project:

    N  Gaussians (a fixed-capacity buffer; inactive slots have opacity 0)
    B  batch (frames or camera views rendered together)
    T  ensemble members of an uncertainty block (10 in the paper)
    V  views (feature modalities) fused by the uncertainty-aware fusion
    D  latent width of a view's state vector (48 in the paper)
    H, W  image height and width in pixels
    C  colour channels (3 for RGB)
    F  width of one audio feature frame
    K  SH coefficients per colour channel ((degree+1)^2)

Cameras follow the OpenCV convention everywhere: x right, y down, z forward;
`viewmat` (4, 4) maps world to camera; `K` is the 3x3 pixel intrinsic matrix and the
centre of pixel (i, j) (column i, row j) lies at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

# The eight MEAD emotions, in the order used for class indices everywhere.
EMOTIONS = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")
