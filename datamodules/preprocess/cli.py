"""``make data`` (``python -m datamodules.preprocess``): a corpus into shards, with one-sentence errors."""

import os
import sys
from pathlib import Path

from datamodules.arguments import OneSentenceParser
from datamodules.corpus import LAYOUTS, CorpusError
from datamodules.media import MediaError
from datamodules.preprocess.packaging import preprocess


def _default_corpus() -> Path:
    """The embedded corpus, generated first when missing; a corpus made with other arguments at its folder is
    one CorpusError sentence that says how to use it as it is."""
    from datamodules.synthetic import DEFAULT_OUT, ensure_default_corpus, read_marker

    try:
        return ensure_default_corpus()
    except CorpusError as error:
        if read_marker(DEFAULT_OUT) is None:
            raise
        advice = f"to preprocess it as it is, run make data RAW={DEFAULT_OUT}"
        raise CorpusError(f"{str(error).rstrip('.')}; {advice}.") from None


def _layout(corpus: str, raw: str | Path) -> str:
    """The folder layout of ``--corpus``; a generated corpus says its own (lrs3 or voxceleb2) in its marker."""
    if corpus != "synthetic":
        return corpus
    from datamodules.synthetic import read_marker

    made = read_marker(raw)
    return made["arguments"]["layout"] if made else "lrs3"


def main(argv: list[str] | None = None) -> int:
    """``make data``: preprocess a corpus into shards; bad arguments and unusable data end with one sentence."""
    parser = OneSentenceParser(
        prog="python -m datamodules.preprocess",
        description="Preprocessing: the clips of a corpus -> per-clip records -> LitData shards.",
    )
    parser.add_argument("--corpus", default="synthetic", choices=("synthetic", *LAYOUTS), help="corpus layout")
    parser.add_argument("--raw", help="corpus root (default for synthetic: the embedded corpus, built if missing)")
    parser.add_argument("--shards", help="output folder (default: data/shards/<corpus>)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel clip workers")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of speakers held out for validation")
    args = parser.parse_args(argv)
    shards = Path(args.shards or f"data/shards/{args.corpus}")
    if args.raw is None and args.corpus != "synthetic":
        parser.error(f"--raw is required for the {args.corpus} corpus")
    if args.workers < 0:
        parser.error(f"--workers must be 0 (in this process) or more, got {args.workers}")
    if not 0 <= args.val_fraction <= 1:
        parser.error(f"--val-fraction must be a share between 0 and 1, got {args.val_fraction}")
    try:
        raw = args.raw or _default_corpus()
        summary = preprocess(raw, _layout(args.corpus, raw), shards, args.workers, args.val_fraction)
    except (CorpusError, MediaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: preprocessing into {shards} failed ({error}).", file=sys.stderr)
        return 1
    kinds = ", ".join(f"{count} {kind}" for kind, count in summary["skipped_kinds"])
    if not summary["ok"]:
        print(
            f"error: none of the {summary['found']} clips is ready ({kinds}), so {shards} holds no index.json; "
            f"each clip's reason is in {shards / 'manifest.jsonl'}.",
            file=sys.stderr,
        )
        return 1
    skipped = f"; {summary['skipped']} skipped: {kinds} (reasons in {shards / 'manifest.jsonl'})" if kinds else ""
    print(
        f"{shards}: {summary['ok']} clips ready ({summary['processed']} processed now){skipped}; "
        + ", ".join(f"{split} {count}" for split, count in summary["splits"].items())
    )
    return 0
