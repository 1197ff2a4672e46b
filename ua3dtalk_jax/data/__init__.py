"""Subject directories: the Subject loader, the SubjectWriter, and the batching pipeline."""

from ua3dtalk_jax.data.subject import FRAME_KEYS, Subject
from ua3dtalk_jax.data.writer import SubjectWriter

__all__ = ["FRAME_KEYS", "Subject", "SubjectWriter"]
