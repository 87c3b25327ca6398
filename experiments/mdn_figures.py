"""Stage-2 figures on speakers that no training clip has: each MDN's validation metrics beside its baselines.

    python -m experiments.mdn_figures full=runs/mdn/full m1=runs/mdn/m1 [--data data/shards/synthetic] [--out FILE.md]

A run folder stands for its best checkpoint; ``label=`` names its rows (default: the folder's name), and runs
that share a label (seeds of one configuration) are shown as mean +- std. The figures are those of
``LandmarkMDN``'s validation step (max decoding, the static reference, time-shuffled audio, best-of-K and
diversity) on a window of ``--frames`` frames centred in each clip, for groups of speakers: the held-out
speakers (the val split; on the embedded corpus also each person in it), the held-out person (the test split)
and, on the embedded corpus, the held-out voice (the test speakers whose voice no training speaker uses, read
from the corpus's ``corpus.json``). The val split chose each run's best checkpoint: only the test rows are
judged on data that chose nothing, and the table's caption says so.
"""

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from datamodules.mdn import LandmarkDataModule
from datamodules.shards import ShardsError, raw_corpus, read_index
from datamodules.synthetic import read_marker
from datamodules.synthetic.speakers import HELD_OUT_VOICE
from lightning_modules.checkpoints import resolve_checkpoint
from lightning_modules.mdn import LandmarkMDN, load_landmark_mdn

COLUMNS = {  # logged name -> table heading
    "val/lmd_mouth": "mouth LMD",
    "val/static/lmd_mouth": "static mouth LMD",
    "val/shuffled/lmd_mouth": "shuffled-audio mouth LMD",
    "val/lmd_face": "face LMD",
    "val/lvd": "LVD",
    "val/mouth_corr": "mouth corr",
    "val/shuffled/mouth_corr": "shuffled-audio corr",
    "val/best_of_k_lmd_mouth": "best-of-K mouth LMD",
    "val/diversity": "diversity",
    "val/nll": "NLL",
}
# Under every table: which figures were judged on data that chose nothing.
CAPTION = (
    "(val) rows are on the split whose `val/lmd_mouth` chose each run's best checkpoint, so they flatter it; "
    "(test) rows and the held-out voice are on the test split, which chose nothing."
)


def corpus_marker(shards: str | Path, raw: str | Path | None = None) -> dict:
    """The ``corpus.json`` of the generated corpus the shards were made from (``raw``, else where ``index.json``
    says): each speaker's split, photo and voice, and the held-out person and voice. Empty for a corpus that is not a
    generated one, and, with a one-sentence note, when the raw corpus is not there (its groups are then missing)."""
    try:
        corpus = raw_corpus(shards, read_index(shards), raw)
    except ShardsError as error:
        if raw is not None:
            raise
        print(f"note: {error}", file=sys.stderr)
        return {}
    return read_marker(corpus) or {}


def held_out_voice_speakers(shards: str | Path, raw: str | Path | None = None) -> set[str]:
    """Test speakers of an embedded corpus that speak with the held-out voice (empty when the raw corpus is gone
    or is not the embedded one)."""
    return _voice_speakers(corpus_marker(shards, raw))


def _voice_speakers(marker: dict) -> set[str]:
    voice = marker.get("held_out", {}).get("voice")
    speakers = marker.get("speakers", {}).items()
    return {speaker for speaker, about in speakers if voice and about["split"] == "test" and about["voice"] == voice}


def validation_people(shards: str | Path, raw: str | Path | None = None) -> dict[str, set[str]]:
    """Person -> the val speakers with that face, on an embedded corpus whose val split holds several people
    (empty otherwise): a mean over the split can hide one face that the model does not help."""
    return _people(corpus_marker(shards, raw), read_index(shards)["splits"]["val"])


def _people(marker: dict, clips: list[str]) -> dict[str, set[str]]:
    speakers = marker.get("speakers", {})
    people = {}
    for clip in clips:  # a clip id is its path in the corpus; a folder is the speaker
        for speaker in set(clip.split("/")) & set(speakers):
            people.setdefault(speakers[speaker]["photo"], set()).add(speaker)
    return people if len(people) > 1 else {}


def speaker_groups(shards: str | Path, raw: str | Path | None = None) -> dict[str, tuple[str, set[str] | None]]:
    """Group name -> (split, the speakers kept, or None for all of the split)."""
    marker = corpus_marker(shards, raw)
    groups = {"held-out speakers (val)": ("val", None)}
    for person, speakers in sorted(_people(marker, read_index(shards)["splits"]["val"]).items()):
        groups[f"held-out speakers: {person} (val)"] = ("val", speakers)
    groups["held-out person (test)"] = ("test", None)
    voice = _voice_speakers(marker)
    if voice:
        groups[f"held-out voice ({HELD_OUT_VOICE})"] = ("test", voice)
    return groups


def masked_batches(data: LandmarkDataModule, split: str, speakers: set[str] | None) -> Iterator[dict]:
    """The split's evaluation batches, with the frames of speakers not in ``speakers`` masked out."""
    keep = torch.tensor([speakers is None or name in speakers for name in data.speakers])
    for batch in data.loader(split, train=False):
        chosen = keep[batch["speaker"]]
        if chosen.any():
            yield {**batch, "mask": batch["mask"] * chosen[:, None].to(batch["mask"].dtype)}


def figures(
    model: LandmarkMDN, shards: str | Path, split: str, speakers: set[str] | None = None, frames: int = 32
) -> dict[str, float]:
    """``model``'s validation metrics (``val/...`` names) on ``split``, over ``speakers`` only when given."""
    from lightning.pytorch import Trainer

    data = LandmarkDataModule(str(shards), frames=frames, batch_size=4, num_workers=0)
    data.setup("fit")
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    batches = DataLoader(list(masked_batches(data, split, speakers)), batch_size=None)  # already batched
    (result,) = trainer.validate(model, batches, verbose=False)
    return {name: float(value) for name, value in result.items()}


def table(rows: dict[str, list[dict[str, dict[str, float]]]]) -> str:
    """Markdown: a line per label and group, a column per ``COLUMNS`` entry; a label of several runs shows the
    mean +- std over them."""
    lines = ["| run | speakers | " + " | ".join(COLUMNS.values()) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for label, runs in rows.items():
        for group in runs[0]:
            cells = []
            for name in COLUMNS:
                values = np.array([run[group][name] for run in runs if name in run[group]])
                cell = f"{values.mean():.4f}" if len(values) else ""
                cells.append(cell + (f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else ""))
            lines.append(
                f"| {label}{f' ({len(runs)} runs)' if len(runs) > 1 else ''} | {group} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n\n" + CAPTION + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.mdn_figures", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="[label=]MDN run folder (its best checkpoint) or checkpoint file")
    parser.add_argument("--data", default="data/shards/synthetic", help="the shards the runs were trained on")
    parser.add_argument("--raw", help="the raw corpus the shards were made from, when it has moved (speaker groups)")
    parser.add_argument("--frames", type=int, default=32, help="frames of the window centred in each clip")
    parser.add_argument("--out", help="also write the table (Markdown) and its figures (.json beside it) here")
    options = parser.parse_args(argv)
    from lightning_modules.checkpoints import CheckpointError

    rows = {}
    try:
        groups = speaker_groups(options.data, options.raw)
        for run in options.runs:
            label, _, path = run.rpartition("=")
            model = load_landmark_mdn(resolve_checkpoint(path, "MDN checkpoint"))
            rows.setdefault(label or Path(path).name, []).append(
                {
                    name: figures(model, options.data, split, speakers, options.frames)
                    for name, (split, speakers) in groups.items()
                }
            )
    except (ShardsError, CheckpointError) as error:
        print(error, file=sys.stderr)
        return 2
    text = table(rows)
    print(text)
    if options.out:
        out = Path(options.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
