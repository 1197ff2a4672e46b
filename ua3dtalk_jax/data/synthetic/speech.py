"""Emotional speech with a phoneme timeline: espeak-ng (the `espeakng-loader` wheel) through ctypes.

`espeak_Initialize(SYNCHRONOUS, 0, data, PHONEME_EVENTS | PHONEME_IPA | DONT_EXIT)` with a synth
callback returns 22.05 kHz samples plus phoneme events whose `sample` field is the sample index
where each phoneme starts; a phoneme lasts until the next event. Emotion is prosody: rate (words
per minute), pitch (0-100), pitch range (0-100) and volume (0-200) move from the neutral setting
towards the emotion's setting by intensity (1: half way, 2: the full setting, 3: 1.5×).

The train and test parts use disjoint sentence lists written for this project.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import tempfile
import threading

import numpy as np
import scipy.signal

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
_SYNCHRONOUS, _PHONEME_EVENTS, _PHONEME_IPA, _DONT_EXIT = 2, 1, 2, 0x8000
_EV_PHONEME, _RATE, _VOLUME, _PITCH, _RANGE = 7, 1, 2, 3, 4
VOICE = b"en-us"
VOWEL_BAND_HZ = (250.0, 2500.0)
OUTPUT_GAIN = 0.5  # headroom: loud (angry) speech at volume 165 peaks above full scale otherwise

# (rate wpm, pitch, range, volume) per emotion; intensity scales the offset from neutral.
PROSODY = {
    "neutral": (160, 50, 50, 100),
    "angry": (185, 58, 80, 165),
    "contempt": (145, 40, 35, 100),
    "disgusted": (135, 38, 40, 110),
    "fear": (195, 74, 72, 90),
    "happy": (178, 70, 85, 135),
    "sad": (122, 30, 18, 70),
    "surprised": (168, 80, 100, 135),
}
INTENSITY_SCALE = {1: 0.5, 2: 1.0, 3: 1.5}

TRAIN_SENTENCES = (
    "The river ran quietly past the old stone mill.",
    "Please bring me the blue folder from the desk.",
    "We watched the boats move slowly across the bay.",
    "My brother baked a warm loaf of bread this morning.",
    "Nobody knew where the small brown puppy had gone.",
    "The music stopped the moment the lights went out.",
    "I will meet you by the map beside the main gate.",
    "She opened the window and the cool air rushed in.",
    "A bright moon rose above the empty parking lot.",
    "Put the papers back before anybody notices.",
    "The farmer fed the pigs a bucket of apples.",
    "Our team played better than anyone had expected.",
    "Why would you move all the boxes by yourself?",
    "The baby woke up when the phone began to buzz.",
    "He painted the fence a pale shade of yellow.",
    "Look at how far the balloon has floated away.",
    "They found a message hidden under the floorboards.",
    "Maybe we should wait until the rain passes.",
    "The museum opens early on the first Monday.",
    "I could hear footsteps coming up the wooden stairs.",
    "You promised me you would be home by nine.",
    "The pilot spoke calmly as the plane shook.",
    "Bob bought a bag of plums at the market.",
    "We have to leave now or we will miss the boat.",
    "The cat jumped onto the table and knocked over a cup.",
    "Every morning the baker opens his shop at five.",
    "Who moved my umbrella from the hallway?",
    "The old bridge was closed for repairs all summer.",
    "I never thought we would win the whole thing.",
    "Pour the milk slowly so it does not spill.",
    "A flock of birds flew over the frozen lake.",
    "Mom put a bowl of soup on the porch for the cat.",
)
TEST_SENTENCES = (
    "The violin player bowed deeply to the crowd.",
    "Bring the map and meet me by the boat ramp.",
    "What a wonderful surprise to find you here.",
    "The workers moved the piano up to the fourth floor.",
    "Big purple balloons bobbed above the picnic.",
    "I do not believe a word of that story.",
)


@dataclasses.dataclass
class Utterance:
    """One synthesised sentence.

    Attributes:
      wav: (S,) float32 at 16 kHz.
      phonemes: list of (start_s, end_s, ipa) with times in seconds from the utterance start.
      energies: (P,) RMS of each phoneme's 250-2500 Hz band (where vowel formants carry energy).
    """

    wav: np.ndarray
    phonemes: list
    energies: np.ndarray


def prosody(emotion: str, intensity: int) -> tuple:
    """(rate, pitch, range, volume) espeak parameters for an emotion at intensity 1..3."""
    if emotion not in PROSODY:
        raise ValueError(f"unknown emotion {emotion!r}; known {sorted(PROSODY)}")
    if intensity not in INTENSITY_SCALE:
        raise ValueError(f"emotion intensity must be 1, 2 or 3, got {intensity}")
    k = INTENSITY_SCALE[intensity]
    base, target = np.array(PROSODY["neutral"]), np.array(PROSODY[emotion])
    rate, pitch, rng, vol = base + k * (target - base)
    return (
        round(rate),
        int(np.clip(pitch, 0, 100)),
        int(np.clip(rng, 0, 100)),
        int(np.clip(vol, 0, 200)),
    )


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class Engine:
    """A private espeak-ng instance.

    espeak-ng keeps synthesis state in C statics that survive espeak_Terminate (the same sentence
    comes out a few samples longer or shorter depending on what was spoken before). Each Engine
    therefore loads its own copy of the shared library, so a script spoken by a fresh Engine is
    bit-identical in every run and every process.
    """

    def __init__(self):
        import espeakng_loader

        src = espeakng_loader.get_library_path()
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, os.path.basename(src))
            shutil.copyfile(src, copy)
            self.lib = ctypes.CDLL(copy)  # mapped now; the file may go
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(
            _SYNCHRONOUS, 0, data, _PHONEME_EVENTS | _PHONEME_IPA | _DONT_EXIT
        )
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng initialisation failed or changed rate: {rate}")
        if self.lib.espeak_SetVoiceByName(VOICE) != 0:
            raise RuntimeError(f"espeak-ng has no voice {VOICE.decode()}")
        self.lock = threading.Lock()
        self._chunks, self._events = [], []
        self._cb = _CALLBACK(self._collect)  # keep a reference: the library calls it later
        self.lib.espeak_SetSynthCallback(self._cb)

    def _collect(self, wav, n, events):
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:
            ev = events[i]
            if ev.type == _EV_PHONEME:
                name = bytes(ev.id).split(b"\0")[0].decode("utf-8", "replace")
                self._events.append((ev.sample, name))
            i += 1
        return 0

    def synth(self, text: str, params: tuple) -> tuple:
        with self.lock:
            for key, value in zip((_RATE, _PITCH, _RANGE, _VOLUME), params):
                self.lib.espeak_SetParameter(key, int(value), 0)
            self._chunks, self._events = [], []
            data = text.encode("utf-8")
            self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)
            self.lib.espeak_Synchronize()
            wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return wav, list(self._events)


def synthesize(
    text: str, emotion: str = "neutral", intensity: int = 1, engine: Engine | None = None
) -> Utterance:
    """Speaks `text` with the emotion's prosody.

    Args:
      text: an English sentence.
      emotion: one of types.EMOTIONS.
      intensity: 1..3.
      engine: the Engine to speak with (a fresh one when None); reuse one across a script.

    Returns:
      The Utterance (16 kHz audio and its phoneme timeline).
    """
    params = prosody(emotion, intensity)
    raw, events = (engine or Engine()).synth(text, params)
    if len(raw) == 0:
        raise RuntimeError(f"espeak-ng produced no audio for {text!r}")
    wav = scipy.signal.resample_poly(raw.astype(np.float32) / 32768.0, 320, 441)  # 22050 → 16000
    wav = np.clip(OUTPUT_GAIN * wav, -1, 1).astype(np.float32)
    duration = len(raw) / ESPEAK_RATE
    phonemes = []
    for k, (sample, name) in enumerate(events):
        end = events[k + 1][0] / ESPEAK_RATE if k + 1 < len(events) else duration
        if name.strip() and end > sample / ESPEAK_RATE:
            phonemes.append((sample / ESPEAK_RATE, end, name))
    sos = scipy.signal.butter(4, VOWEL_BAND_HZ, btype="band", fs=SAMPLE_RATE, output="sos")
    band = scipy.signal.sosfiltfilt(sos, wav)
    energies = np.array(
        [
            np.sqrt(
                np.mean(
                    band[int(a * SAMPLE_RATE) : max(int(b * SAMPLE_RATE), int(a * SAMPLE_RATE) + 1)]
                    ** 2
                )
            )
            for a, b, _ in phonemes
        ]
    )
    return Utterance(wav, phonemes, energies)
