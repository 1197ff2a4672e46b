"""Subject directories: the Subject loader and the SubjectWriter."""

from ua3dtalk_jax.data.subject import FRAME_KEYS, Subject
from ua3dtalk_jax.data.writer import SubjectWriter

__all__ = ["FRAME_KEYS", "Subject", "SubjectWriter"]
