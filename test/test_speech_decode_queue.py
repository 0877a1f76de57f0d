"""speech_node's decode queue (speech/decode_queue.py), without ROS: order, never blocking, speaking states that find
the queue full, and a worker from an earlier activation that must not read on."""
import threading

import numpy as np

from koba_ros.speech.decode_queue import DecodeQueue


def chunk(n: int = 480) -> np.ndarray:
    return np.zeros(n, np.int16)


def test_a_worker_reads_speaking_states_and_audio_in_order_starting_with_the_latest_state():
    q = DecodeQueue()
    q.put_speaking(True)            # before any worker: remembered, not queued
    token = q.start()
    q.put_audio(chunk(1))
    q.put_speaking(False)
    q.put_audio(chunk(2))
    got = [q.get(token) for _ in range(4)]
    assert [(k, v if k == "speaking" else len(v)) for k, v in got] == [("speaking", True), ("audio", 1),
                                                                        ("speaking", False), ("audio", 2)]


def test_a_state_that_finds_the_queue_full_comes_next_and_the_older_queued_one_is_void():
    q = DecodeQueue(maxsize=4)
    token = q.start()               # holds the initial state
    q.put_speaking(True)
    while q.put_audio(chunk()):     # producers never block: a full queue says so
        pass
    q.put_speaking(False)           # missed: the queue is full
    got = []
    while not q.items.empty():
        got.append(q.get(token))
    states = [v for k, v in got if k == "speaking"]
    assert states == [False]        # the latest came first; the initial False and the stale True were void


def test_stop_ends_the_worker_and_a_stale_worker_never_reads_the_next_activations_items():
    q = DecodeQueue()
    old = q.start()
    q.get(old)                      # the initial state
    q.stop()
    assert q.get(old) is None
    new = q.start()
    q.put_audio(chunk())
    assert q.get(old) is None and q.get(new)[0] == "speaking" and q.get(new)[0] == "audio"
    done = []
    reader = threading.Thread(target=lambda: done.append(q.get(new)))
    reader.start()                  # waits on an empty queue ...
    q.stop()                        # ... until its stop token wakes it
    reader.join(5)
    assert done == [None]
