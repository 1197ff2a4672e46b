"""What a real camera clip must satisfy before it is tracked, and what is done when it differs.

Policies (each prints one line when it acts, and the line goes into subject.json's
metadata.preprocess.notes):

- Audio and video lengths. Both are assumed to start together. The clip keeps the frames the
  audio covers: n = min(video frames, round(audio seconds · fps)), and the audio is cut to n / fps
  (padded by at most half a frame of silence when it ends inside the last kept frame). A frame the
  speech does not reach would train the mouth to stay shut while the person talks, so such
  frames are dropped, never padded with silence. Differences of up to LENGTH_SLACK_FRAMES are
  rounding and pass silently; beyond that one line says what was dropped. When the shorter of the
  two covers less than MIN_OVERLAP of the longer, they are most likely not one recording (a wrong
  --audio file), and the clip is refused.
- Face size. The face's width is the width of the face-mesh box (cheek to cheek) in source pixels,
  the median over the frames the crop step samples. Below MIN_FACE_PX the clip is refused; from
  there to GOOD_FACE_PX one line says the face is near the limit. Measured with
  experiments/preprocess_face_size.py (the synthetic subject, whose landmarks, poses and masks are
  known, downscaled step by step; README "Preprocessing your own video"): a size "holds" while the
  mouth-opening correlation stays ≥ 0.85, the head-rotation error ≤ 1.25× and the mouth-mask IoU
  ≥ 85 % of the full-resolution run's. Near-lossless video holds down to 40 px and breaks at 32
  (rotation 1.4×, mouth IoU 78 %; at 28 px the mouth correlation falls to 0.63); at a phone's
  0.08 bit/px it holds at 48 px and breaks at 40 (mouth correlation 0.78, mouth IoU 66 %).
- Upscaling. The crop window's side in source pixels against --size: beyond UPSCALE_NOTE × the
  frames only get blurrier and training slower, so one line says so and suggests a size.
"""

from __future__ import annotations

import math

import numpy as np

from ua3dtalk_jax.preprocess import video as video_lib

MIN_FACE_PX = 40  # face-mesh box width (source px) below which even a clean video breaks
GOOD_FACE_PX = 48  # below this a compressed (phone) video breaks: noted
UPSCALE_NOTE = 1.5  # --size / crop side above which the upscaling is reported
LENGTH_SLACK_FRAMES = 1  # audio/video differences up to this are rounding (containers, codecs)
MIN_OVERLAP = 0.5  # shorter / longer length below which audio and video are refused as a pair


class PreprocessError(video_lib.VideoError):
    """Input that cannot become a subject; the message says which file, why, and what to do."""


def frames_to_use(video: str, audio: str | None, video_frames: int, audio_s: float, fps: float):
    """Applies the length policy to one clip.

    Args:
      video: the video path; audio: the separate audio path (None = the video's own track).
      video_frames: frames decoded at fps; audio_s: the audio's duration (s); fps: frame rate.

    Returns:
      (frames to keep, a one-line note or None).

    Raises:
      PreprocessError: the two overlap for less than MIN_OVERLAP of the longer.
    """
    video_s = video_frames / fps
    audio_frames = math.floor(audio_s * fps + 0.5)
    source = f"the audio ({audio})" if audio else "its audio track"
    shorter, longer = sorted((audio_s, video_s))
    if shorter < MIN_OVERLAP * longer:
        fix = "give the audio recorded with this video" if audio else "give the speech with --audio"
        raise PreprocessError(
            f"{video}: the video is {video_s:.2f} s but {source} is {audio_s:.2f} s; less than "
            f"{MIN_OVERLAP:.0%} overlaps, so they are not one recording: {fix}, or cut both to "
            f"the same stretch first"
        )
    keep = min(video_frames, audio_frames)
    if abs(audio_frames - video_frames) <= LENGTH_SLACK_FRAMES:
        return keep, None
    if audio_frames < video_frames:
        dropped = video_frames - keep
        return keep, (
            f"{video}: {source} is {audio_s:.2f} s, the video {video_s:.2f} s: kept the first "
            f"{keep / fps:.2f} s ({keep} frames); the last {dropped} frames "
            f"({dropped / fps:.2f} s) have no speech and were dropped"
        )
    return keep, (
        f"{video}: {source} is {audio_s:.2f} s, the video {video_s:.2f} s: kept all {keep} "
        f"frames; the last {audio_s - keep / fps:.2f} s of audio have no video and were dropped"
    )


def face_width(boxes: np.ndarray) -> float:
    """Median face width (px) of (K, 4) face-mesh boxes (x0, y0, x1, y1)."""
    boxes = np.asarray(boxes, np.float64)
    return float(np.median(boxes[:, 2] - boxes[:, 0]))


def check_face_size(video: str, width: float, frame_size) -> str | None:
    """Refuses a face narrower than MIN_FACE_PX source pixels; notes one below GOOD_FACE_PX.

    Args:
      video: path (for the message); width: face width in source px; frame_size: (W, H).

    Returns:
      a one-line note, or None.
    """
    w, h = frame_size
    if width < MIN_FACE_PX:
        raise PreprocessError(
            f"{video}: the face is {width:.0f} px wide in the {w}x{h} frame; at least "
            f"{MIN_FACE_PX} px are needed for reliable landmarks, lips and head pose: record "
            f"closer or at a higher resolution"
        )
    if width < GOOD_FACE_PX:
        return (
            f"{video}: the face is {width:.0f} px wide in the {w}x{h} frame, near the limit: "
            f"below {GOOD_FACE_PX} px the lips and head pose hold only if the video is not "
            f"heavily compressed"
        )
    return None


def upscale_note(video: str, side: int, size: int) -> str | None:
    """One line when --size upscales the crop window (side, source px) more than UPSCALE_NOTE×."""
    if size <= UPSCALE_NOTE * side:
        return None
    better = max(64, int(side) // 32 * 32 or 64)
    return (
        f"{video}: the face window is {side} px in the source; --size={size} upscales it "
        f"{size / side:.1f}x, which adds no detail and slows training (--size={better} keeps "
        f"all there is)"
    )
