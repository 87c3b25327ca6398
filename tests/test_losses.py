"""The contrastive losses (lightning_modules/losses.py) against per-clip and single-batch references."""

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.losses import InfoNCEOutput, ScaledCosine, SpeakerInfoNCE, SyncInfoNCE
from lightning_modules.metrics import memory_perplexity


def per_clip_sync_loss(similarity: ScaledCosine, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """The sync loss written the slow way: one clip, one step at a time."""
    batch, steps = audio.shape[:2]
    losses = []
    for clip in range(batch):
        for step in range(steps):
            logits = torch.stack(
                [
                    similarity.scale * F.cosine_similarity(audio[clip, step], visual[clip, other], dim=0)
                    for other in range(steps)
                ]
            )
            losses.append(F.cross_entropy(logits[None], torch.tensor([step])))
    return torch.stack(losses).mean()


def test_vectorised_sync_loss_equals_the_per_clip_loop_with_its_gradients():
    torch.manual_seed(0)
    audio = torch.randn(3, 5, 8, requires_grad=True)
    visual = torch.randn(3, 5, 8, requires_grad=True)
    loss_fn = SyncInfoNCE()
    with torch.no_grad():
        loss_fn.similarity.scale.fill_(7.0)

    out = loss_fn(audio, visual)
    fast_grads = torch.autograd.grad(out.loss, (audio, visual, loss_fn.similarity.scale))
    reference = per_clip_sync_loss(loss_fn.similarity, audio, visual)
    slow_grads = torch.autograd.grad(reference, (audio, visual, loss_fn.similarity.scale))

    assert out.logits.shape == (3, 5, 5)
    torch.testing.assert_close(out.loss, reference)
    for fast, slow in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(fast, slow)


def test_sync_loss_does_not_mix_clips():
    torch.manual_seed(0)
    audio, visual = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    loss_fn = SyncInfoNCE()
    first_alone = loss_fn(audio[:1], visual[:1]).loss
    changed = visual.clone()
    changed[1] = torch.randn(4, 8)
    per_clip = F.cross_entropy(loss_fn(audio, changed).logits[0], torch.arange(4))
    torch.testing.assert_close(per_clip, first_alone)


def test_accuracies_count_the_matching_candidate_among_the_top_k():
    features = torch.eye(6)[None]  # [1, 6, 6]: every step matches only itself
    assert SyncInfoNCE()(features, features).accuracy(1) == 1.0
    # Query 0's target ranks 1st, query 1's 2nd, query 2's 3rd.
    logits = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    ranked = InfoNCEOutput(torch.tensor(0.0), logits, torch.arange(3))
    assert [ranked.accuracy(k).item() for k in (1, 2, 3, 5)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])


def test_speaker_loss_over_a_gathered_global_batch_equals_the_single_batch_loss():
    torch.manual_seed(0)
    ranks, per_rank = 2, 3
    audio = torch.randn(ranks * per_rank, 8, requires_grad=True)
    visual = torch.randn(ranks * per_rank, 8, requires_grad=True)
    loss_fn = SpeakerInfoNCE()

    single = loss_fn(audio, visual)
    single_grads = torch.autograd.grad(single.loss, (audio, visual))

    # Each simulated rank queries with its own clips against every rank's visual features (the all_gather);
    # DDP then averages the ranks' gradients, which the mean over ranks reproduces.
    rank_losses = [
        loss_fn(audio[rank * per_rank : (rank + 1) * per_rank], visual, offset=rank * per_rank).loss
        for rank in range(ranks)
    ]
    gathered = torch.stack(rank_losses).mean()
    gathered_grads = torch.autograd.grad(gathered, (audio, visual))

    assert single.logits.shape == (6, 6)
    torch.testing.assert_close(gathered, single.loss)
    for fast, slow in zip(gathered_grads, single_grads, strict=True):
        torch.testing.assert_close(fast, slow)


def test_speaker_loss_targets_start_at_the_rank_offset():
    audio = torch.eye(4)
    out = SpeakerInfoNCE()(audio[2:], audio, offset=2)
    assert out.targets.tolist() == [2, 3] and out.accuracy(1) == 1.0


def test_the_scale_is_learnable_with_the_published_initial_value_and_a_shared_shift_would_change_nothing():
    """The published bias (a shift of every logit, init -5) is left out: the loss and its gradients are blind to it."""
    torch.manual_seed(0)
    audio, visual = torch.randn(4, 6, 8, requires_grad=True), torch.randn(4, 6, 8)
    loss_fn = SyncInfoNCE()
    assert loss_fn.similarity.scale.requires_grad and loss_fn.similarity.scale.item() == 10.0
    assert [name for name, _ in loss_fn.named_parameters()] == ["similarity.scale"]
    loss = loss_fn(audio, visual).loss
    expected = torch.autograd.grad(loss, audio)[0]
    shifted = F.cross_entropy((loss_fn(audio, visual).logits - 5.0).flatten(0, 1), torch.arange(6).repeat(4))
    torch.testing.assert_close(shifted, loss)
    torch.testing.assert_close(torch.autograd.grad(shifted, audio)[0], expected)


def test_memory_perplexity_is_slot_count_when_uniform_and_one_when_collapsed():
    uniform = torch.full((2, 3, 8), 1 / 8)
    collapsed = F.one_hot(torch.full((2, 3), 5), 8).float()
    torch.testing.assert_close(memory_perplexity(uniform), torch.tensor(8.0))
    torch.testing.assert_close(memory_perplexity(collapsed), torch.tensor(1.0))


def test_speaker_loss_drops_other_clips_of_the_same_speaker_from_the_negatives():
    """Clips 0 and 2 share a speaker: each one's loss is the InfoNCE over the candidates without the other."""
    torch.manual_seed(0)
    audio, visual = torch.randn(4, 8), torch.randn(4, 8)
    speakers = torch.tensor([5, 7, 5, 9])
    loss_fn = SpeakerInfoNCE()

    out = loss_fn(audio, visual, speakers=speakers)

    logits = loss_fn.similarity(audio, visual)
    kept = [[0, 1, 3], [0, 1, 2, 3], [1, 2, 3], [0, 1, 2, 3]]  # candidates of each query
    losses = [
        F.cross_entropy(logits[query, columns][None], torch.tensor([columns.index(query)]))
        for query, columns in enumerate(kept)
    ]
    reference = torch.stack(losses).mean()
    torch.testing.assert_close(out.loss, reference)
    assert out.logits[0, 2] == out.logits[2, 0] == float("-inf")
    assert torch.isfinite(out.logits.diagonal()).all() and torch.isfinite(out.logits[1]).all()
    assert out.loss < loss_fn(audio, visual).loss, "a same-speaker negative only adds to the unmasked loss"


def test_a_same_speaker_clip_cannot_take_the_identity_match():
    """Two clips of one speaker that look alike: unmasked, each one's match is a toss-up; masked, both are right."""
    features = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    queries = torch.tensor([[1.0, 0.01], [1.0, 0.0], [0.0, 1.0]])  # clip 0's query looks more like clip 1
    assert SpeakerInfoNCE()(queries, features).accuracy(1) < 1.0
    masked = SpeakerInfoNCE()(queries, features, speakers=torch.tensor([3, 3, 4]))
    assert masked.accuracy(1) == 1.0


def test_masked_speaker_loss_over_a_gathered_global_batch_equals_the_single_batch_loss():
    """Each simulated rank masks with the speakers of the whole global batch, as the DDP gather provides them."""
    torch.manual_seed(0)
    audio = torch.randn(6, 8, requires_grad=True)
    visual = torch.randn(6, 8, requires_grad=True)
    speakers = torch.tensor([0, 1, 2, 1, 0, 3])  # every rank holds a clip whose speaker is on the other rank
    loss_fn = SpeakerInfoNCE()

    single = loss_fn(audio, visual, speakers=speakers)
    ranks = [loss_fn(audio[rank * 3 : rank * 3 + 3], visual, rank * 3, speakers).loss for rank in range(2)]
    torch.testing.assert_close(torch.stack(ranks).mean(), single.loss)
    for fast, slow in zip(
        torch.autograd.grad(torch.stack(ranks).mean(), (audio, visual)),
        torch.autograd.grad(single.loss, (audio, visual)),
        strict=True,
    ):
        torch.testing.assert_close(fast, slow)
