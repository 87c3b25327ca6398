"""One clip -> its shard record: decoding, Face Mesh landmarks, registration, crops and the mel spectrogram."""

from collections.abc import Iterable, Iterator

import numpy as np

from datamodules import face
from datamodules.audio import mel_spectrogram
from datamodules.corpus import Clip, frame_sidecar, sidecar_lips_together, sidecar_visemes
from datamodules.media import FPS, SAMPLE_RATE, MediaError, non_finite_audio, open_clip
from datamodules.threads import one_thread

MIN_SECONDS = 1.0
SILENCE_PEAK = 1e-4  # audio whose absolute peak stays below this is silent
KEPT_FRAMES_BYTES = 100 << 20  # decoded frames a clip keeps between its two passes (256x256: 20 s; 720p: 1.5 s)
RECORD_KEYS = (
    "clip",  # str, clip id
    "speaker",  # str
    "split",  # str
    "frames",  # int T
    "mel",  # float16 [4T, 80]
    "landmarks",  # float32 [T, 68, 3], face-crop pixels (256 x 256)
    "registered",  # float32 [T, 68, 3], canonical frame
    "pose",  # float32 [T, 6]: axis-angle (3), translation in face-crop pixels (2), log-scale (1); absolute
    "face_detected",  # uint8 [T], 1 where Face Mesh found the face
    "valid",  # uint8 [T], detected or inside a gap of at most 5 frames
    "reference_index",  # int, the valid frame with the most closed mouth
    "lips_together",  # uint8 [T] where the clip has a ground-truth sidecar (1: the lips touch), else [0]
    "visemes",  # int8 [T] where the clip has a ground-truth sidecar (index in VISEME_CLASSES), else [0]
    "face_jpeg",  # uint8 [bytes] and face_offsets int64 [T + 1]: 256 x 256 aligned face crops
    "face_offsets",
    "mouth_jpeg",  # uint8 [bytes] and mouth_offsets int64 [T + 1]: 96 x 96 mouth crops
    "mouth_offsets",
    "face_box",  # float32 [3]: centre x, centre y, side of the face crop box in source pixels (face.CropBox)
    "source_size",  # int64 [2]: height, width of the source frames (to paste a crop back)
)


# The kinds of reasons a clip is skipped for, as they read after a count ("3 corrupt or truncated"): the first
# whose words are in the manifest's reason.
SKIP_KINDS = (
    ("no audio track", "without an audio track"),
    ("no video stream", "without a video stream"),
    ("non-finite audio", "with NaN or infinite audio samples"),
    ("audio track is silent", "with silent audio"),
    ("shorter than", f"shorter than {MIN_SECONDS:g} s"),
    ("a face in only", f"with a face in under {face.MIN_FACE_RATIO:.0%} of the frames"),
    ("worker process died", "whose worker process died"),
    ("unexpected", "with an unexpected error"),
    ("media file", "corrupt or truncated"),
    ("decode", "corrupt or truncated"),
    ("truncated", "corrupt or truncated"),
)


class ClipSkipped(Exception):
    """A clip that cannot be used; the message is the manifest's reason."""


class DecodedOnce:
    """The frames of a clip, decoded once when they fit in ``budget`` bytes: the first full pass keeps the frames
    it decodes, and later passes read them from memory; a longer clip is decoded again on each pass, in bounded
    memory (what ``frames`` does)."""

    def __init__(self, frames: Iterable[np.ndarray], budget: int | None = None):
        self.frames, self.budget = frames, KEPT_FRAMES_BYTES if budget is None else budget
        self.kept: list[np.ndarray] | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.kept is not None:
            yield from self.kept
            return
        kept, size = [], 0
        for frame in self.frames:
            if kept is not None:
                size += frame.nbytes
                kept.append(frame)
                if size > self.budget:
                    kept = None
            yield frame
        self.kept = kept


def skip_kind(reason: str) -> str:
    """The kind of a manifest's skip ``reason``, as it reads after a count (``SKIP_KINDS``)."""
    return next((kind for words, kind in SKIP_KINDS if words in reason), "for another reason")


def _encoded_crops(frames: Iterable[np.ndarray], face_box: face.CropBox, mouth_boxes: list[face.CropBox]):
    """The face and mouth crops of every frame in one decoding pass, each JPEG-encoded as soon as it is cut, so
    memory holds JPEG bytes, not raw crops: ``(face_jpeg, face_offsets), (mouth_jpeg, mouth_offsets)``."""
    faces, mouths = [], []
    for frame, mouth_box in zip(frames, mouth_boxes, strict=True):
        faces.append(face.jpeg_bytes(face_box.cut(frame, face.FACE_CROP_SIZE)))
        mouths.append(face.jpeg_bytes(mouth_box.cut(frame, face.MOUTH_CROP_SIZE)))
    return face.pack_jpegs(faces), face.pack_jpegs(mouths)


def process_clip(clip: Clip) -> dict:
    """The shard record of one clip (``RECORD_KEYS``); raises ClipSkipped with the reason when it is unusable."""
    try:
        frames, audio = open_clip(clip.path)  # [T, H, W, 3] decoded frame by frame on each pass, [N]
        if len(audio) < MIN_SECONDS * SAMPLE_RATE:
            raise ClipSkipped(f"shorter than {MIN_SECONDS:g} s ({len(audio) / SAMPLE_RATE:.2f} s of audio)")
        finite = np.isfinite(audio)
        if not finite.all():
            raise ClipSkipped(non_finite_audio(clip.path, int((~finite).sum()), int(np.argmin(finite))))
        if np.abs(audio).max() < SILENCE_PEAK:
            raise ClipSkipped("the audio track is silent")
        decoded = DecodedOnce(frames)
        landmarks, detected = face.track_landmarks(decoded)  # the first pass, which counts the frames
    except MediaError as error:
        raise ClipSkipped(str(error)) from error
    if len(frames) < MIN_SECONDS * FPS:
        raise ClipSkipped(f"shorter than {MIN_SECONDS:g} s ({len(frames) / FPS:.2f} s of video)")
    if detected.mean() < face.MIN_FACE_RATIO:
        raise ClipSkipped(f"a face in only {detected.mean():.0%} of the frames (at least 80% needed)")
    landmarks, valid = face.fill_gaps(landmarks, detected)
    face_box = face.face_crop_box(landmarks, valid)
    crop_landmarks = face_box.to_crop(landmarks, face.FACE_CROP_SIZE)
    registered, pose = face.register(crop_landmarks)
    mouth_boxes = face.mouth_crop_boxes(landmarks)
    # A worker is one clip on one core: on a shared 2-core machine two threads cost the mel 17 times one's CPU time.
    with one_thread():
        (face_jpeg, face_offsets), (mouth_jpeg, mouth_offsets) = _encoded_crops(decoded, face_box, mouth_boxes)
        mel = mel_spectrogram(audio, len(frames)).astype(np.float16)
    lips_together, visemes = np.zeros(0, np.uint8), np.zeros(0, np.int8)
    truth = frame_sidecar(clip.path, len(frames))
    if truth is not None:  # only a corpus with sidecars, the generator's own, pays for the generator's imports
        from datamodules.synthetic.articulation import VISEME_CLASSES

        lips_together, visemes = sidecar_lips_together(truth), sidecar_visemes(truth, VISEME_CLASSES)
    return {
        "clip": clip.clip_id,
        "speaker": clip.speaker,
        "split": clip.split,
        "frames": len(frames),
        "mel": mel,
        "landmarks": crop_landmarks,
        "registered": registered,
        "pose": pose,
        "face_detected": detected.astype(np.uint8),
        "valid": valid.astype(np.uint8),
        "reference_index": face.reference_index(registered, valid),
        "lips_together": lips_together,
        "visemes": visemes,
        "face_jpeg": face_jpeg,
        "face_offsets": face_offsets,
        "mouth_jpeg": mouth_jpeg,
        "mouth_offsets": mouth_offsets,
        "face_box": face_box.as_array(),
        "source_size": np.array(frames.shape[1:3], np.int64),
    }
