"""Corpus discovery in the published layouts (datamodules/corpus.py): speakers, official test, validation."""

from pathlib import Path

import pytest

from datamodules.corpus import CorpusError, discover, speaker_hash, validation_speakers


def make_tree(root: Path, relative_paths: list[str]) -> Path:
    for relative in relative_paths:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")
    return root


def by_id(clips):
    return {clip.clip_id: clip for clip in clips}


def test_lrs3_speakers_and_official_test(tmp_path):
    paths = [
        f"{part}/vid{n}/0000{u}.mp4" for part, n in [("pretrain", 1), ("trainval", 2), ("test", 3)] for u in (1, 2)
    ]
    clips = by_id(discover(make_tree(tmp_path, [*paths, "trainval/vid2/00001.txt", "other/x/1.mp4"]), "lrs3"))
    assert set(clips) == {path[:-4] for path in paths}, "transcripts and clips outside the layout are ignored"
    assert clips["test/vid3/00001"].split == "test" and clips["test/vid3/00001"].speaker == "vid3"
    assert clips["pretrain/vid1/00002"].speaker == "vid1" and clips["pretrain/vid1/00002"].split in ("train", "val")


def test_lrs2_test_split_comes_from_its_listing(tmp_path):
    root = make_tree(tmp_path, ["main/111/00001.mp4", "main/222/00001.mp4", "pretrain/333/00001.mp4"])
    (root / "test.txt").write_text("222/00001\n")
    clips = by_id(discover(root, "lrs2"))
    assert clips["main/222/00001"].split == "test"
    assert clips["main/111/00001"].split != "test" and clips["pretrain/333/00001"].speaker == "333"


@pytest.mark.parametrize("layout", ["voxceleb1", "voxceleb2"])
def test_voxceleb_speaker_is_the_id_folder(tmp_path, layout):
    root = make_tree(tmp_path, ["dev/mp4/id00012/abcDEF_123/00001.mp4", "test/mp4/id00099/xyz/00002.mp4"])
    clips = by_id(discover(root, layout))
    assert clips["dev/mp4/id00012/abcDEF_123/00001"].speaker == "id00012"
    assert clips["test/mp4/id00099/xyz/00002"].split == "test"


def test_plain_folder_speaker_is_the_parent_folder(tmp_path):
    clips = by_id(discover(make_tree(tmp_path, ["alice/a.mp4", "bob/sub/b.mp4", "c.mp4"]), "folder"))
    assert [clips[name].speaker for name in ("alice/a", "bob/sub/b", "c")] == ["alice", "sub", "c"]


def test_validation_is_by_speaker_and_reproducible(tmp_path):
    paths = [f"trainval/spk{n:02d}/0000{u}.mp4" for n in range(20) for u in (1, 2, 3)]
    root = make_tree(tmp_path, paths)
    first, second = discover(root, "lrs3"), discover(root, "lrs3")
    assert [clip.split for clip in first] == [clip.split for clip in second]
    val_speakers = {clip.speaker for clip in first if clip.split == "val"}
    train_speakers = {clip.speaker for clip in first if clip.split == "train"}
    assert len(val_speakers) == 2 and not val_speakers & train_speakers
    assert len(validation_speakers({"a", "b", "c", "d"}, 0.1)) == 2, "at least two when there are four or more"
    assert validation_speakers({"a", "b"}, 0.1) == {"a"} or validation_speakers({"a", "b"}, 0.1) == {"b"}
    assert validation_speakers({"a", "b"}, 0.0) == set()


def test_a_speakers_split_never_changes_when_speakers_are_added():
    speakers = [f"spk{n:03d}" for n in range(400)]
    growing = [validation_speakers(set(speakers[:count]), 0.1) for count in (50, 100, 200, 400)]
    for smaller, larger, count in zip(growing, growing[1:], (50, 100, 200), strict=False):
        assert larger & set(speakers[:count]) == smaller, "no validation speaker moves to train, none joins it"
    assert 0.06 <= len(growing[-1]) / 400 <= 0.14, "about val_fraction of the speakers"
    assert all(speaker_hash(speaker) < 0.1 for speaker in growing[-1])
    fallback = validation_speakers(set(speakers[:5]), 0.1)
    assert fallback == set(sorted(speakers[:5], key=speaker_hash)[:2]), "small corpora: the two lowest hashes"


def test_the_data_side_has_one_corpus_error():
    from datamodules import synthetic

    assert synthetic.CorpusError is CorpusError, "the generator raises the CorpusError that entry points catch"


def test_bad_corpus_arguments_are_one_clear_sentence(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        discover(tmp_path / "nowhere", "lrs3")
    with pytest.raises(CorpusError, match="Unknown corpus layout 'lrs9'"):
        discover(tmp_path, "lrs9")
    with pytest.raises(CorpusError, match=r"Found no clips .* lrs3 layout \(\{pretrain,trainval,test\}"):
        discover(make_tree(tmp_path, ["videos/a.mp4"]), "lrs3")
