"""The benchmark report (experiments/bench/report.py, __main__.py) and the published-code runner (published.py):
goals met or not, one report per machine merged section by section, snapshots unpacked and isolated. No timing
is asserted."""

import json
import subprocess
import sys
import tarfile
import textwrap

import pytest
import torch

from experiments.bench import BENCHMARKS
from experiments.bench.__main__ import main
from experiments.bench.published import SnapshotError, published_step, unpack
from experiments.bench.report import Row, Section, at_least, at_most, machine_name, write_report


def test_a_row_says_whether_its_goal_is_met():
    assert Row("speed-up", 5.2, "x", at_least(5)).status == "met"
    assert Row("speed-up", 4.9, "x", at_least(5)).status == "NOT MET"
    assert Row("overhead", 24.0, "%", at_most(25)).status == "met"
    assert Row("overhead", 26.0, "%", at_most(25)).status == "NOT MET"
    assert Row("steps", 3.0, "steps/s").status == ""
    missing = Row.not_measured("GPU steps", "steps/s", "no GPU", at_least(1))
    assert missing.status == "not measured" and missing.note == "not measured: no GPU"


def test_machine_names_are_file_stems_without_trademarks_or_clock():
    info = {"cpu": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cores": 2, "gpu": None}
    assert machine_name(info) == "intel-xeon-2-cores"
    assert machine_name({"cpu": "AMD EPYC", "cores": 16, "gpu": "NVIDIA H200"}) == "amd-epyc-16-cores-nvidia-h200"


def section(name: str, value: float) -> Section:
    return Section(name, f"what {name} measures", f"python -m experiments.bench {name}", "now", 1.0, (0.5, 0.7),
                   rows=[Row(f"{name} speed", value, "x", at_least(2))])  # fmt: skip


def test_the_report_keeps_other_benchmarks_and_replaces_a_rerun_one(tmp_path):
    write_report([section("sfe", 1.0)], tmp_path)
    json_path, markdown_path = write_report([section("preprocess", 3.0)], tmp_path)
    write_report([section("sfe", 2.5)], tmp_path)

    report = json.loads(json_path.read_text())
    assert list(report["benchmarks"]) == ["sfe", "preprocess"]
    assert report["benchmarks"]["sfe"]["rows"][0]["value"] == 2.5
    assert report["machine"]["cores"] and report["machine"]["versions"]["torch"] == torch.__version__
    text = markdown_path.read_text()
    assert "| sfe speed | 2.5 | x | ≥ 2 | met |" in text and "| preprocess speed | 3 | x | ≥ 2 | met |" in text
    assert "python -m experiments.bench sfe" in text and report["machine"]["cpu"] in text


def test_an_unknown_benchmark_is_refused_with_the_list(capsys):
    with pytest.raises(SystemExit):
        main(["sfe", "speed"])
    error = capsys.readouterr().err
    assert "unknown benchmark speed" in error and all(name in error for name in BENCHMARKS)


FAKE_MODEL = """
import torch
from utils.helpers import SIZE

calc_topk_accuracy = None


class MemDPC_BD(torch.nn.Module):
    def __init__(self, is_bidirectional, dropout, network, mem_size):
        super().__init__()
        print("banner")
        self.linear = torch.nn.Linear(SIZE, 1)

    def forward(self, audio, img):
        label = torch.arange(audio.shape[0]).cuda()  # as the published code does
        accuracy = calc_topk_accuracy(torch.eye(len(label))[:, [1, 0, 2, 3]].t(), label, topk=(1, 3))
        return self.linear(img.flatten(4).mean(-1)).mean(), [], [torch.stack(accuracy)]
"""


@pytest.fixture()
def fake_snapshot(tmp_path):
    """A git repository shaped like the published one: ``self_supervised/model.py`` importing its own ``utils``."""
    code = tmp_path / "checkout" / "self_supervised"
    (code / "utils").mkdir(parents=True)
    (code / "model.py").write_text(textwrap.dedent(FAKE_MODEL))
    (code / "utils" / "__init__.py").write_text("")
    (code / "utils" / "helpers.py").write_text("SIZE = 5\n")
    git = ["git", "-C", str(tmp_path / "checkout"), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], check=True)
    return tmp_path / "checkout"


def test_a_snapshot_unpacks_from_a_checkout_a_git_repository_or_an_archive(fake_snapshot, tmp_path):
    archive = tmp_path / "macl.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fake_snapshot / "self_supervised", arcname="MACL-main/self_supervised")
    for number, snapshot in enumerate((fake_snapshot, fake_snapshot / ".git", archive)):
        folder = tmp_path / f"unpacked{number}"
        folder.mkdir()
        assert (unpack(snapshot, folder) / "utils" / "helpers.py").read_text() == "SIZE = 5\n"
    with pytest.raises(SnapshotError, match="missing.*does not exist"):
        unpack(tmp_path / "missing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapshotError, match="empty is neither a checkout"):
        unpack(tmp_path / "empty", tmp_path / "empty")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the .cuda() calls are only neutralised without a GPU")
def test_the_published_step_runs_without_a_gpu_and_leaves_no_module_behind(fake_snapshot):
    sys.modules["utils"] = utils = type(sys)("utils")  # a module of the same name that must survive
    try:
        with published_step(fake_snapshot, torch.rand(4, 2, 20, 80), torch.rand(4, 2, 5, 3, 8, 8)) as step:
            step()
            step()
        assert sys.modules["utils"] is utils and "model" not in sys.modules
    finally:
        del sys.modules["utils"]
    assert torch.Tensor.cuda is not None and torch.rand(1).cuda.__name__ == "cuda"


def test_lookahead_as_long_as_the_clip_predicts_as_offline_and_none_does_not(synthetic_shards, tiny_runs):
    from experiments.bench.lookahead import OFFLINE, Setting, measure
    from lightning_modules.mdn import load_landmark_mdn

    mdn = load_landmark_mdn(tiny_runs["mdn"] / "checkpoints" / "last.ckpt")
    whole, blind = Setting(5, 100, 100), Setting(5, 100, 0)  # 100 frames of context: more than a 2 s clip
    live_whole, live_blind = Setting(5, 0, 100, stateful=True), Setting(5, 0, 0, stateful=True)
    measured, evaluated = measure(mdn, synthetic_shards, 1, [OFFLINE, whole, blind, live_whole, live_blind])
    assert measured[OFFLINE].lmd("offline") == 0
    # without future context the BiGRU's backward half differs (so the measure can fail); with it, nothing does
    for full, bounded in ((whole, blind), (live_whole, live_blind)):
        assert measured[full].lmd("offline") < 1e-2 * measured[bounded].lmd("offline"), full
        assert abs(measured[full].lmd("truth") - evaluated) < 1e-3  # as make evaluate predicts whole clips
        assert len(measured[bounded].chunk_seconds) == 10 and measured[bounded].real_time_factor > 0


def test_the_start_up_is_timed_step_by_step_to_the_first_frame_in_a_fresh_process(tmp_path, tiny_runs):
    import soundfile
    from PIL import Image
    from skimage import data

    from experiments.bench.generate import STARTUP_STEPS, startup_seconds
    from tests.speech_data import speech_like

    Image.fromarray(data.astronaut()).save(tmp_path / "photo.png")
    soundfile.write(tmp_path / "speech.wav", speech_like(1.0, 16000), 16000)
    seconds = startup_seconds(tmp_path / "photo.png", tmp_path / "speech.wav", str(tiny_runs["mdn"]),
                              str(tiny_runs["renderer"]))  # fmt: skip
    assert list(seconds) == list(STARTUP_STEPS) and all(value > 0 for value in seconds.values())
    assert abs(sum(seconds[step] for step in STARTUP_STEPS if step != "total") - seconds["total"]) < 1e-6
