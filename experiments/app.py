"""``make app``: a web page, and its Gradio API, that makes a talking-head video from one photo and one recording.

    python -m experiments.app [--host 127.0.0.1] [--port 7860] [--mdn runs/mdn/latest]
        [--renderer runs/renderer/latest] [--jobs N] [--max-seconds S]

A person uploads a photo (or takes one with the webcam), uploads or records speech, picks the mode, samples, seed
and lip gain (the defaults of ``make generate``), and gets the video to play and download, with the photo's notes
(several faces, a small face). Each job is :func:`experiments.generate.generate` on models loaded once at
start-up; jobs wait in Gradio's queue, at most ``--jobs`` at once (1 on a CPU). Bad input is answered with the
command line's sentence, the temporary path replaced by the file's own name, and leaves no file behind. Uploads
and videos live in one temporary folder: files older than an hour are deleted, the folder when the server stops.
The page listens on 127.0.0.1 unless ``--host`` (``HOST=``) says otherwise. With no trained models it says to
run ``make demo`` and takes no job. The API: ``/generate``, as ``gradio_client`` shows (docs/app.md).
"""

import argparse
import contextlib
import html
import math
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from datamodules.media import MediaError, probe
from experiments.generate import INPUT_ERRORS, LIP_GAIN, MODES, GenerationError, Models, generate, resolve_checkpoint
from lightning_modules.checkpoints import CheckpointError

HOST, PORT = "127.0.0.1", 7860
MAX_SECONDS = 120.0  # the longest recording a job takes (``make generate`` takes any length)
MAX_FILE_SIZE = "50mb"  # the largest upload Gradio accepts
MAX_SAMPLES = 4
QUEUE_SIZE = 20  # jobs that may wait; a visitor past that is told the queue is full
CACHE_AGE = 3600  # seconds an upload or a video is kept
VIDEO_NAME = "talking-head.mp4"
NO_MODELS = "{reason} `make demo` trains every stage on the embedded corpus in minutes; then restart `make app`."


@dataclass
class Studio:
    """What the page serves: the models loaded once (``None`` with the sentence ``missing`` when there are none),
    the checkpoints they came from, and the temporary ``folder`` that holds every job's videos."""

    models: Models | None
    checkpoints: tuple[Path, Path] | None
    missing: str | None
    folder: Path
    max_seconds: float = MAX_SECONDS

    @classmethod
    def load(cls, mdn: str | Path, renderer: str | Path, folder: Path, max_seconds: float = MAX_SECONDS) -> "Studio":
        """Loads the MDN and the renderer (run folders or checkpoint files, as ``make generate`` takes them)."""
        try:
            checkpoints = resolve_checkpoint(mdn, "mdn"), resolve_checkpoint(renderer, "renderer")
            models = Models.load(*checkpoints)
        except CheckpointError as error:
            return cls(None, None, NO_MODELS.format(reason=error), folder, max_seconds)
        return cls(models, checkpoints, None, folder, max_seconds)

    def describe(self) -> str:
        """One line that says which checkpoints the page uses (or why it has none)."""
        if self.checkpoints is None:
            return self.missing or ""
        return f"Models: MDN {self.checkpoints[0]}, renderer {self.checkpoints[1]}."

    def make_video(
        self,
        image: str | Path | None,
        audio: str | Path | None,
        mode: str = "max",
        samples: int = 1,
        seed: int = 0,
        lip_gain: float = LIP_GAIN,
        progress: bool = False,
    ) -> tuple[list[Path], list[str]]:
        """One job: ``generate`` into a folder of its own under ``folder``; returns the video(s) and the photo's notes.

        Raises one of INPUT_ERRORS with one sentence on bad input, and then leaves no file."""
        if self.models is None:
            raise CheckpointError(self.missing)
        if not image:
            raise GenerationError("Upload a photo with a face (or take one with the webcam) first.")
        if not audio:
            raise GenerationError("Upload or record the speech first.")
        if not 1 <= samples <= MAX_SAMPLES:
            raise GenerationError(f"The page makes 1 to {MAX_SAMPLES} samples at a time, got {samples}.")
        seconds = probe(audio).duration
        if seconds > self.max_seconds:
            raise MediaError(
                f"{audio} lasts {seconds:.1f} s; this page takes at most {self.max_seconds:g} s "
                "(`make generate` takes any length)."
            )
        job = self.folder / uuid.uuid4().hex
        job.mkdir(parents=True)
        notes: list[str] = []
        try:
            paths = generate(image, audio, job / VIDEO_NAME, mode, samples, seed, lip_gain=lip_gain,
                             progress=progress, report=notes.append, models=self.models)  # fmt: skip
        except BaseException:
            shutil.rmtree(job, ignore_errors=True)
            raise
        return paths, notes


def _number(value, name: str, whole: bool = False) -> float:
    """``value`` (a page or API field) as a number, an int when ``whole``; else a GenerationError naming the field."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number) or (whole and not number.is_integer()):
        raise GenerationError(f"The {name} must be a {'whole ' if whole else ''}number, got {value!r}.")
    return int(number) if whole else number


def _uploaded(payload) -> tuple[str | None, str | None]:
    """The server path and the visitor's own file name of an upload as Gradio sends it unprocessed."""
    if not payload:
        return None, None
    if isinstance(payload, str):
        return payload, Path(payload).name
    path = payload.get("path")
    return path, payload.get("orig_name") or (Path(path).name if path else None)


def build_page(studio: Studio):
    """The Gradio page (``gr.Blocks``) over ``studio``; its one event is the API's ``/generate``."""
    import gradio as gr

    def run(image, audio, mode, samples, seed, lip_gain, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        # Gradio's preprocessing is off (preprocess=False), so that the photo and the speech reach generation as
        # uploaded and every bad input is answered by generation's own sentence, not by Gradio's decoder.
        (image_path, image_name), (audio_path, audio_name) = _uploaded(image), _uploaded(audio)

        def named(text: str) -> str:  # the uploads' temporary paths replaced by the visitor's own file names
            for path, name in ((image_path, image_name), (audio_path, audio_name)):
                text = text.replace(str(path), name) if path and name else text
            return text

        try:
            count, first_seed = _number(samples, "number of samples", whole=True), _number(seed, "seed", whole=True)
            paths, notes = studio.make_video(image_path, audio_path, str(mode), count, first_seed,
                                             _number(lip_gain, "lip gain"), progress=True)  # fmt: skip
        except INPUT_ERRORS as error:
            raise gr.Error(named(str(error)), duration=None, print_exception=False) from None
        text = "\n".join(f"- {named(note)}" for note in notes) or "The face was found; nothing to note."
        return str(paths[0]), [str(path) for path in paths], text

    with gr.Blocks(title="MACL talking head", analytics_enabled=False, delete_cache=(600, CACHE_AGE)) as page:
        gr.Markdown(
            "# A talking head from one photo and one recording\n"
            "Upload a photo with a face (or take one with the webcam) and a recording of speech (or record one), "
            f"then press **Make the video**. Limits: files up to {MAX_FILE_SIZE.upper()}, speech up to "
            f"{studio.max_seconds:g} s, {MAX_SAMPLES} samples; jobs wait in a queue."
        )
        if studio.missing:
            gr.Markdown(f"**{html.escape(studio.missing)}**", elem_id="missing")
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label="Photo", sources=["upload", "webcam", "clipboard"], type="filepath",
                                 image_mode=None, elem_id="photo")  # fmt: skip
                speech = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath", elem_id="speech")
                with gr.Accordion("Settings (the defaults of make generate)", open=False):
                    mode = gr.Radio(list(MODES), value="max", label="Mode",
                                    info="max: the likeliest motion; mean: their average; sample: drawn")  # fmt: skip
                    samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples (mode sample)")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    lip_gain = gr.Slider(0, 5, value=LIP_GAIN, step=0.05, label="Lip gain (1: as predicted)")
                button = gr.Button("Make the video", variant="primary", interactive=studio.models is not None,
                                   elem_id="generate")  # fmt: skip
            with gr.Column():
                video = gr.Video(label="Video", interactive=False, elem_id="video")
                videos = gr.File(label="Download (every sample)", file_count="multiple", height=110, elem_id="videos")
                notes = gr.Markdown(elem_id="notes")
        gr.Markdown(html.escape(studio.describe()), elem_id="models")
        button.click(run, [photo, speech, mode, samples, seed, lip_gain], [video, videos, notes],
                     api_name="generate", preprocess=False)  # fmt: skip
    return page


def start(studio: Studio, host: str = HOST, port: int = PORT, jobs: int = 1, block: bool = True):
    """Serves the page of ``studio`` on ``host:port`` with at most ``jobs`` jobs at once; returns the page (its
    ``local_url`` is where it answers). ``block=False`` returns at once (tests)."""
    import gradio as gr

    page = build_page(studio)
    page.queue(default_concurrency_limit=jobs, max_size=QUEUE_SIZE)
    # the system's fonts: the default theme's come from a web font service, and nothing is fetched at run time
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    page.launch(server_name=host, server_port=port, prevent_thread_lock=not block, max_file_size=MAX_FILE_SIZE,
                theme=theme, ssr_mode=False, share=False, footer_links=["api"], quiet=not block)  # fmt: skip
    return page


@contextlib.contextmanager
def temporary_folder() -> Iterator[Path]:
    """A new folder ``macl-app-*`` under the system's temporary folder for the uploads and videos of a page (made
    Gradio's own, ``GRADIO_TEMP_DIR``, while it lasts); removed with everything in it on exit."""
    folder = Path(tempfile.mkdtemp(prefix="macl-app-"))
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def _stop(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does, so the temporary folder is removed


def main(argv: list[str] | None = None) -> int:
    """``make app``: loads the models, serves the page until Ctrl-C (or SIGTERM), then removes its temporary folder."""
    parser = argparse.ArgumentParser(prog="python -m experiments.app", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=HOST, help="address to listen on (0.0.0.0: the network)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", PORT)), help="port (PORT)")
    parser.add_argument("--mdn", default="runs/mdn/latest", help="MDN checkpoint or run folder")
    parser.add_argument("--renderer", default="runs/renderer/latest", help="renderer checkpoint or run folder")
    parser.add_argument("--jobs", type=int, default=2 if torch.cuda.is_available() else 1, help="jobs at once")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="the longest recording a job takes")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}.")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt), temporary_folder() as folder:
        studio = Studio.load(args.mdn, args.renderer, folder, args.max_seconds)
        print(studio.describe(), f"At most {args.jobs} job(s) at once; temporary folder {folder}.", flush=True)
        start(studio, args.host, args.port, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
