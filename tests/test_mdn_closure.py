"""The MDN's closure head and closure-aware decoding (lightning_modules/mdn.py; close_lips, deepen_dips)."""

import torch
from lightning.pytorch import seed_everything

from datamodules.face import CANONICAL_FACE
from lightning_modules.mdn import LandmarkMDN, closure_loss, viseme_loss
from lightning_modules.mdn_decoding import CLOSURE_RAMP, close_lips, deepen_dips
from lightning_modules.metrics import mouth_opening
from tests.mdn_data import TINY_SFE, SyntheticLandmarkData, clip_statistics
from tests.trainer import quiet_trainer


def open_faces(gaps: list[float]) -> torch.Tensor:
    """Canonical faces ``[T, 68, 3]`` whose lower lip (outer and inner) sits ``gaps[t]`` lower."""
    faces = torch.from_numpy(CANONICAL_FACE).expand(len(gaps), -1, -1).clone()
    faces[:, [55, 56, 57, 58, 59, 65, 66, 67], 1] += torch.tensor(gaps)[:, None]
    return faces


def test_closing_the_lips_follows_the_probability_ramp_and_keeps_their_thickness():
    faces = open_faces([0.2, 0.2, 0.2, 0.2])
    low, high = CLOSURE_RAMP
    closed = close_lips(faces, torch.tensor([0.0, low, (low + high) / 2, 0.9]))
    gap = float(mouth_opening(faces[0]))  # the canonical face's own gap and 0.2
    expected = torch.tensor([gap, gap, gap / 2, 0.0])
    torch.testing.assert_close(mouth_opening(closed), expected, atol=1e-5, rtol=0)
    thickness = lambda f: f[:, 57, 1] - f[:, 66, 1]  # noqa: E731  lower lip: outer minus inner
    torch.testing.assert_close(thickness(closed), thickness(faces), atol=0.005, rtol=0)
    torch.testing.assert_close(closed[0], faces[0])
    untouched = [point for point in range(68) if point not in (49, 50, 51, 52, 53, 55, 56, 57, 58, 59, 61, 62, 63,
                                                                65, 66, 67)]  # fmt: skip
    torch.testing.assert_close(closed[:, untouched], faces[:, untouched])


def test_deepening_dips_closes_a_mouth_that_half_closes_between_openings_and_leaves_slopes_alone():
    """A frame half as open as the openings on both sides closes; a rise, a plateau, the edges and a dip of 2% stay;
    a dip that the smoothing made shallow closes when measured on the track before it."""
    openings = torch.tensor([0.3, 0.3, 0.3, 0.15, 0.3, 0.3, 0.3, 0.35, 0.4, 0.45, 0.45, 0.45, 0.44, 0.45, 0.45])
    canonical = mouth_opening(open_faces([0.0]))  # the canonical face's own gap
    faces = open_faces((openings - canonical).tolist())
    deepened = deepen_dips(faces)
    assert mouth_opening(deepened[3]) < 1e-5, "the dip closes"
    kept = [frame for frame in range(len(openings)) if frame != 3]
    torch.testing.assert_close(deepened[kept], faces[kept])
    smoothed = open_faces((openings.index_fill(0, torch.tensor([3]), 0.29) - canonical).tolist())
    torch.testing.assert_close(deepen_dips(smoothed), smoothed)
    assert mouth_opening(deepen_dips(smoothed, measured=faces)[3]) < 1e-5, "the dip measured before the smoothing"


def test_decoding_measures_the_dips_before_the_smoothing_fills_them_in():
    """A mixture whose mouth half closes for one frame between openings decodes to closed lips there, though the
    smoothing (1 frame) leaves that frame's dip too shallow to close when measured after it."""
    model = LandmarkMDN(sfe_hparams=TINY_SFE, hidden_dim=32, reference_dim=8, closure_weight=1.0, smoothing=1.0)
    openings = torch.full((15,), 0.3).index_fill(0, torch.tensor([7]), 0.15)
    faces = open_faces((openings - mouth_opening(open_faces([0.0]))).tolist())  # [T, 68, 3]
    mixture = {
        "means": torch.cat([model.normalise(faces), torch.zeros(15, 6)], -1)[None, :, None],  # [1, T, 1, 142]
        "sigmas": torch.ones(1, 15, 1),
        "logits": torch.zeros(1, 15, 1),
        "closure_logits": torch.full((1, 15), -10.0),  # the closure head sure of nothing
    }
    decoded = model.tracks(mixture, faces[None, 0], "max")[0][0, 0]  # [T, 68, 3]
    assert mouth_opening(decoded[7]) < 1e-4, mouth_opening(decoded[7])
    assert mouth_opening(decoded[0]) > 0.29


def test_the_closure_loss_weighs_both_classes_alike():
    closed = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.ones_like(closed)
    always_open = closure_loss(torch.full_like(closed, -4.0), closed, mask)
    always_closed = closure_loss(torch.full_like(closed, 4.0), closed, mask)
    assert abs(always_open - always_closed) < 1e-4, "predicting the common class is no cheaper"
    assert closure_loss(torch.where(closed > 0, 4.0, -4.0), closed, mask) < 0.05 * always_open


def balanced_accuracy(model: LandmarkMDN, data: SyntheticLandmarkData) -> float:
    """Balanced accuracy of the closure head on the validation clips against their ``lips_closed``."""
    model.eval()
    hits = {True: [], False: []}
    with torch.no_grad():
        for batch in data.val_dataloader():
            predicted = model(batch["audio"], batch["reference"])["closure_logits"] > 0
            truth = batch["lips_closed"] > 0.5
            for kind in (True, False):
                hits[kind].append((predicted == truth)[truth == kind].float())
    return 0.5 * sum(torch.cat(hits[kind]).mean().item() for kind in (True, False))


def test_the_closure_head_learns_closed_lips_from_the_speech_and_decoding_closes_them():
    """On held-out synthetic clips the head tells closed lips from open ones from the audio (shuffled audio: near
    chance), and decoding with it leaves the truly closed frames more closed than the mixture alone."""
    seed_everything(0)
    statistics = clip_statistics(SyntheticLandmarkData(frames=16).train_set)
    model = LandmarkMDN(sfe_hparams=TINY_SFE, statistics=statistics, hidden_dim=32, reference_dim=8, lr=3e-3,
                        closure_weight=1.0, smoothing=0.0)  # fmt: skip
    quiet_trainer(max_epochs=12).fit(model, SyntheticLandmarkData(frames=16, batch_size=8, train_clips=64))
    heard = balanced_accuracy(model, SyntheticLandmarkData(frames=16))
    shuffled = balanced_accuracy(model, SyntheticLandmarkData(frames=16, time_shuffled=True))
    assert heard > 0.8 and heard > shuffled + 0.15, (heard, shuffled)

    batch = next(iter(SyntheticLandmarkData(frames=16, batch_size=8).val_dataloader()))
    with torch.no_grad():
        mixture = model(batch["audio"], batch["reference"])
        with_closure = model.tracks(mixture, batch["reference"], "max")[0][0]
        without = model.tracks({k: v for k, v in mixture.items() if k != "closure_logits"}, batch["reference"], "max")
    closed = batch["lips_closed"] > 0.5
    gap = lambda tracks: (mouth_opening(tracks) - mouth_opening(batch["reference"])[:, None])[closed].mean()  # noqa: E731
    assert gap(with_closure) < 0.7 * gap(without[0][0]), (gap(with_closure), gap(without[0][0]))


def test_the_viseme_loss_counts_only_known_unmasked_frames_and_is_zero_without_any():
    logits = torch.randn(2, 5, 18, requires_grad=True)
    visemes = torch.tensor([[3, -1, 7, 7, 0], [-1, -1, -1, -1, -1]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0], [1.0] * 5])
    counted = torch.tensor([[True, False, True, False, True], [False] * 5])
    expected = torch.nn.functional.cross_entropy(logits[counted], visemes[counted])
    torch.testing.assert_close(viseme_loss(logits, visemes, mask), expected)
    unknown = viseme_loss(logits, torch.full_like(visemes, -1), mask)
    unknown.backward()
    assert unknown.item() == 0.0 and logits.grad is not None


def test_the_viseme_head_is_there_only_when_weighted_and_its_loss_joins_the_total():
    statistics = clip_statistics(SyntheticLandmarkData(frames=16).train_set)
    batch = next(iter(SyntheticLandmarkData(frames=16, batch_size=4).train_dataloader()))
    batch["visemes"] = torch.randint(0, 18, batch["mask"].shape)
    losses = {}
    for weight in (0.0, 1.0):
        seed_everything(0)
        model = LandmarkMDN(sfe_hparams=TINY_SFE, statistics=statistics, hidden_dim=32, reference_dim=8,
                            viseme_weight=weight)  # fmt: skip
        mixture = model(batch["audio"], batch["reference"])
        assert ("viseme_logits" in mixture) == (weight > 0)
        losses[weight] = model._shared_step(batch, "train")
    assert mixture["viseme_logits"].shape == (*batch["mask"].shape, 18)
    assert losses[1.0] > losses[0.0] + 1.0, "an untrained head's cross-entropy over 18 visemes (about ln 18) adds"
