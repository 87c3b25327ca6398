"""The web page (experiments/app.py): its job function as `generate` is tested, bad input as the command line's
sentence with nothing left, the page without models, two API calls at once, and (marker `browser`) a real
headless Chromium that uploads a photo and a recording and plays the video."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data

from datamodules.media import SAMPLE_RATE, probe, read_video
from experiments import generate as generation
from experiments.app import Studio
from tests import browser
from tests.speech_data import speech_like

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Photos (one face; two faces; none; not an image) and recordings (1.2, 0.8, 2 s; silent, short, garbage)."""
    folder = tmp_path_factory.mktemp("inputs")
    astronaut = data.astronaut()
    head = astronaut[:300, 100:400]
    group = np.full((600, 800, 3), 110, np.uint8)
    group[250:450, 550:750] = cv2.resize(head, (200, 200), interpolation=cv2.INTER_AREA)
    group[50:350, 50:350] = head
    Image.fromarray(head).save(folder / "face.png")
    Image.fromarray(group).save(folder / "group.jpg", quality=95)
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    (folder / "notes.jpg").write_text("not an image")
    for name, seconds in (("speech.wav", 1.2), ("other.wav", 0.8), ("longer.wav", 2.0), ("short.wav", 0.3)):
        soundfile.write(folder / name, speech_like(seconds, SAMPLE_RATE, seed=int(seconds * 10)), SAMPLE_RATE)
    soundfile.write(folder / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    (folder / "garbage.m4a").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    return {path.name: path for path in folder.iterdir()}


@pytest.fixture(scope="module")
def studio(tiny_runs, tmp_path_factory) -> Studio:
    return Studio.load(tiny_runs["mdn"], tiny_runs["renderer"], tmp_path_factory.mktemp("app"), max_seconds=1.5)


def test_a_job_is_generate_on_the_loaded_models_with_the_photos_notes(studio, inputs, tiny_runs, tmp_path):
    paths, notes = studio.make_video(inputs["group.jpg"], inputs["speech.wav"])
    assert len(paths) == 1 and paths[0].parent.parent == studio.folder and paths[0].suffix == ".mp4"
    info = probe(paths[0])
    assert info.has_audio and (info.width, info.height, info.fps) == (800, 600, 25.0)
    assert abs(info.duration - 1.2) <= 0.08
    assert len(notes) == 3 and "Found 2 faces" in notes[0] and "largest" in notes[0]
    assert "confidence" in notes[1]  # the face detector's, as the command line prints it
    assert notes[2].startswith("warning: The face in") and "small" in notes[2]
    alone = generation.generate(inputs["group.jpg"], inputs["speech.wav"], tmp_path / "alone.mp4",
                                mdn=tiny_runs["mdn"], renderer=tiny_runs["renderer"], progress=False)[0]  # fmt: skip
    page, command_line = read_video(paths[0]).astype(int), read_video(alone).astype(int)
    assert page.shape == command_line.shape == (30, 600, 800, 3) and np.abs(page - command_line).mean() < 0.5
    paths[0].unlink()
    paths[0].parent.rmdir()


@pytest.mark.parametrize(
    ("image", "audio", "options"),
    [
        ("coffee.png", "speech.wav", {}),
        ("notes.jpg", "speech.wav", {}),
        ("face.png", "silent.wav", {}),
        ("face.png", "short.wav", {}),
        ("face.png", "garbage.m4a", {}),
        ("face.png", "face.png", {}),
        ("face.png", "speech.wav", {"samples": 3}),
        ("face.png", "speech.wav", {"lip_gain": 7.0}),
    ],
)
def test_bad_input_is_the_command_lines_sentence_and_leaves_nothing(studio, inputs, tiny_runs, capsys, tmp_path,
                                                                    image, audio, options):  # fmt: skip
    with pytest.raises(generation.INPUT_ERRORS) as raised:
        studio.make_video(inputs[image], inputs[audio], **options)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    code = generation.main([f"--image={inputs[image]}", f"--audio={inputs[audio]}", f"--out={tmp_path / 'v.mp4'}",
                            f"--mdn={tiny_runs['mdn']}", f"--renderer={tiny_runs['renderer']}", "--no-progress",
                            *flags])  # fmt: skip
    assert code == 1 and capsys.readouterr().err.strip().splitlines()[-1] == f"error: {raised.value}"
    assert list(studio.folder.iterdir()) == []


def test_the_pages_own_limits_are_one_sentence(studio, inputs):
    with pytest.raises(generation.INPUT_ERRORS, match=r"longer\.wav lasts 2\.0 s; this page takes at most 1\.5 s"):
        studio.make_video(inputs["face.png"], inputs["longer.wav"])
    with pytest.raises(generation.INPUT_ERRORS, match=r"^The page makes 1 to 4 samples at a time, got 5\.$"):
        studio.make_video(inputs["face.png"], inputs["speech.wav"], mode="sample", samples=5)
    with pytest.raises(generation.INPUT_ERRORS, match=r"^Unknown mode 'loud'; use one of max, mean, sample\.$"):
        studio.make_video(inputs["face.png"], inputs["speech.wav"], mode="loud")
    with pytest.raises(generation.INPUT_ERRORS, match=r"^Upload a photo"):
        studio.make_video(None, inputs["speech.wav"])
    assert list(studio.folder.iterdir()) == []


def test_page_fields_that_are_not_numbers_are_one_sentence():
    from experiments.app import _number

    assert _number("3", "seed", whole=True) == 3 and _number(2.0, "seed", whole=True) == 2 and _number(1.5, "x") == 1.5
    with pytest.raises(generation.GenerationError, match=r"^The seed must be a whole number, got 'abc'\.$"):
        _number("abc", "seed", whole=True)
    with pytest.raises(generation.GenerationError, match=r"^The seed must be a whole number, got 2\.5\.$"):
        _number(2.5, "seed", whole=True)
    with pytest.raises(generation.GenerationError, match=r"^The lip gain must be a number, got None\.$"):
        _number(None, "lip gain")


def test_without_models_the_page_says_to_run_make_demo_and_takes_no_job(tmp_path, inputs):
    import gradio as gr

    from experiments.app import build_page

    empty = Studio.load(tmp_path / "runs/mdn/latest", tmp_path / "runs/renderer/latest", tmp_path / "app")
    assert empty.models is None and "No landmark MDN checkpoint" in empty.missing and "`make demo`" in empty.missing
    with pytest.raises(generation.INPUT_ERRORS, match="make demo"):
        empty.make_video(inputs["face.png"], inputs["speech.wav"])
    page = build_page(empty)
    buttons = [block for block in page.blocks.values() if isinstance(block, gr.Button)]
    texts = [block.value for block in page.blocks.values() if isinstance(block, gr.Markdown)]
    assert [button.interactive for button in buttons] == [False]
    assert any("`make demo`" in str(text) for text in texts)


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def test_two_api_calls_at_once_give_each_its_own_video(studio, inputs, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from experiments.app import start

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(studio.folder))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    page = start(studio, port=_free_port(), jobs=2, block=False)
    try:
        client = Client(page.local_url, verbose=False, download_files=False)
        calls = [("face.png", "other.wav", 0), ("group.jpg", "speech.wav", 0)]
        with ThreadPoolExecutor(2) as pool:  # both submitted before either finishes
            jobs = [client.submit(handle_file(inputs[image]), handle_file(inputs[audio]), "max", 1, seed, 1.5,
                                  api_name="/generate") for image, audio, seed in calls]  # fmt: skip
            results = list(pool.map(lambda job: job.result(timeout=300), jobs))
        for k, ((image, audio, _), (served, videos, notes)) in enumerate(zip(calls, results, strict=True)):
            video = tmp_path / f"{k}.mp4"  # fetched after both jobs ended: neither may have overwritten the other
            urllib.request.urlretrieve(served["url"], video)
            frames = read_video(video).astype(int)
            expected = studio.make_video(inputs[image], inputs[audio])[0][0]
            assert frames.shape == read_video(expected).shape and np.abs(frames - read_video(expected)).mean() < 0.5
            assert abs(probe(video).duration - soundfile.info(str(inputs[audio])).duration) <= 0.08
            assert len(videos) == 1 and ("Found 2 faces in group.jpg;" in notes) == (image == "group.jpg")
        with pytest.raises(AppError, match=r"No face was found in coffee\.png; use a photo with a clearly visible"):
            client.predict(handle_file(inputs["coffee.png"]), handle_file(inputs["speech.wav"]), api_name="/generate")
    finally:
        page.close()


# In a real browser: Debian's headless Chromium driven by Selenium through Debian's chromium-driver


@pytest.fixture(scope="module")
def served_page(tiny_runs, tmp_path_factory):
    """`python -m experiments.app` on the tiny runs, as `make app` starts it; after the tests it is stopped with
    SIGTERM and must leave its temporary folder behind it removed."""
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    temporary, port = tmp_path_factory.mktemp("tmp"), _free_port()
    env = {**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": str(ROOT), "PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "experiments.app", f"--mdn={tiny_runs['mdn']}",
                               f"--renderer={tiny_runs['renderer']}"], cwd=ROOT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600  # minutes on 2 busy cores
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the app did not start"
                time.sleep(1)
        # one folder of the app's own (torch's export may leave its caches beside it: not the visitors' files)
        assert len([path for path in temporary.iterdir() if path.name.startswith("macl-app-")]) == 1
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    assert [path for path in temporary.iterdir() if path.name.startswith("macl-app-")] == []


@pytest.mark.browser
def test_in_chromium_a_photo_and_a_recording_give_a_playable_video(served_page, inputs):
    with browser.chromium() as driver:
        video = browser.make_video_on_page(driver, served_page, inputs["group.jpg"], inputs["speech.wav"])
        assert video["error"] is None and video["readyState"] >= 2 and video["played"] > 0
        assert abs(video["duration"] - 1.2) <= 0.1 and (video["videoWidth"], video["videoHeight"]) == (800, 600)
        assert "Found 2 faces" in browser.text_of(driver, "#notes")


@pytest.mark.browser
def test_in_chromium_a_photo_without_a_face_shows_the_sentence(served_page, inputs):
    with browser.chromium() as driver:
        shown = browser.error_on_page(driver, served_page, inputs["coffee.png"], inputs["speech.wav"])
        assert re.search(r"No face was found in coffee\.png; use a photo with a clearly visible", shown), shown
