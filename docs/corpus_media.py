"""Makes the pictures of docs/corpus.md from a built embedded corpus: ``docs/corpus_strip.png`` (each person at
rest, on a bilabial, an open vowel, a labiodental and a rounded vowel, as the sidecar's visemes say) and two
sample clips. Usage: ``python docs/corpus_media.py data/corpus/synthetic``."""

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from datamodules.media import read_video

DOCS = Path(__file__).resolve().parent
COLUMNS = ("rest", "bilabial", "open", "labiodental", "round")


def pick(truth: dict, viseme: str) -> int | None:
    """The frame of ``viseme`` with the median mouth opening among its frames (the middle of a run)."""
    frames = [index for index, name in enumerate(truth["visemes"]) if name == viseme]
    if viseme == "rest":
        frames = [index for index in frames if 0 < index < len(truth["visemes"]) - 1]
    if not frames:
        return None
    openings = np.array(truth["mouth_opening"])[frames]
    return frames[int(np.argsort(openings)[len(frames) // 2])] if viseme != "open" else frames[int(np.argmax(openings))]


def main(corpus: Path) -> None:
    marker = json.loads((corpus / "corpus.json").read_text())
    rows, seen, samples = [], set(), []
    for relative in marker["clips"]:
        clip = corpus / relative
        truth = json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())
        if truth["photo"] in seen:
            continue
        chosen = [pick(truth, viseme) for viseme in COLUMNS]
        if any(index is None for index in chosen):
            continue
        seen.add(truth["photo"])
        video = read_video(clip)
        tiles = []
        for viseme, index in zip(COLUMNS, chosen, strict=True):
            tile = np.ascontiguousarray(video[index][::2, ::2])
            cv2.putText(tile, viseme, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, 1))
        samples.append((clip, truth))
    Image.fromarray(np.concatenate(rows, 0)).save(DOCS / "corpus_strip.png", optimize=True)
    clips = [corpus / relative for relative in marker["clips"]]
    voices = [(clip, json.loads(clip.with_name(f"{clip.stem}.truth.json").read_text())) for clip in clips]
    neural = [clip for clip, truth in voices if truth["split"] != "test" and truth["voice"]["engine"] == "piper"]
    shutil.copy((neural or [samples[0][0]])[0], DOCS / "corpus_clip.mp4")  # a training speaker, the neural voice
    unseen = next((clip for clip, truth in voices if truth["split"] == "test" and truth["voice"]["engine"] == "espeak"),
                  None)  # fmt: skip
    if unseen is not None:
        shutil.copy(unseen, DOCS / "corpus_clip_held_out.mp4")
    print(f"Wrote {DOCS / 'corpus_strip.png'} ({len(rows)} people) and the sample clips.")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data/corpus/synthetic"))
