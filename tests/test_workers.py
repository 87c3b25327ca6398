"""Frames rendered in parallel (experiments/generation/workers.py): in order, bounded, truly concurrent, and the
same video as one worker writes."""

import threading
import time

import cv2
import numpy as np
import soundfile
import torch
from skimage import data

from datamodules.media import SAMPLE_RATE, decode_speech, read_video
from datamodules.photo import reference_from_photo
from datamodules.threads import one_thread
from experiments import generate as generation
from experiments.generation.workers import one_thread_per_worker, ordered_map
from tests.speech_data import speech_like


def test_results_come_in_order_when_later_items_finish_first():
    def slow_for_early(item: int) -> int:
        time.sleep(0.02 * (5 - item % 5))
        return item * item

    assert list(ordered_map(slow_for_early, range(12), workers=3)) == [item * item for item in range(12)]


def test_items_run_at_the_same_time_on_several_workers():
    both_inside = threading.Barrier(2, timeout=30)  # waits for a second item to be running: fails on one worker

    def meet(item: int) -> int:
        both_inside.wait()
        return item

    assert list(ordered_map(meet, range(4), workers=2)) == [0, 1, 2, 3]


def test_items_are_read_only_a_few_ahead_of_the_results_taken():
    read = []

    def items():
        for item in range(100):
            read.append(item)
            yield item

    results = ordered_map(lambda item: item, items(), workers=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    assert len(read) <= 3 + 2 * 2 + 1


def test_several_workers_take_one_thread_each_and_one_worker_keeps_the_pools():
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    with one_thread_per_worker(2):
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (torch_threads, cv2_threads)
    with one_thread_per_worker(1):
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (torch_threads, cv2_threads)


def test_two_workers_write_the_video_that_one_writes(tmp_path, tiny_runs):
    soundfile.write(tmp_path / "speech.wav", speech_like(1.2, SAMPLE_RATE), SAMPLE_RATE)
    speech = decode_speech(tmp_path / "speech.wav", tmp_path / "decoded.wav")
    models = generation.Models.load(tiny_runs["mdn"], tiny_runs["renderer"])
    reference = reference_from_photo(data.astronaut())
    videos = [
        read_video(generation.write_video(reference, speech, models, tmp_path / f"{workers}.mp4", workers=workers))
        for workers in (1, 2)
    ]
    assert len(videos[0]) == speech.frames and np.array_equal(videos[0], videos[1])


def test_overlapping_one_thread_blocks_of_two_threads_give_the_pools_back():
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    first_inside, second_inside, first_left = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with one_thread():
            first_inside.set()
            second_inside.wait(30)
        first_left.set()

    def second():
        first_inside.wait(30)
        with one_thread():  # opened while the first block holds one thread, closed after it ends
            second_inside.set()
            first_left.wait(30)
            seen.append(torch.get_num_threads())  # after the first block ended, inside the second

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert seen == [1]
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (torch_threads, cv2_threads)
