"""koba_ros.atomic_write: readers of a cache see the old file or the whole new one."""
import multiprocessing
import os

import pytest

from koba_ros.atomic_write import write_atomically


def test_the_file_appears_whole_and_no_temporary_is_left(tmp_path):
    target = tmp_path / "sub" / "cache.txt"
    assert write_atomically(target, lambda tmp: tmp.write_text("new")) == target
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["cache.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "cache.txt"
    target.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("ha")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["cache.txt"]


def _write_many(target: str, letter: str, times: int) -> None:
    for _ in range(times):
        write_atomically(target, lambda tmp: tmp.write_text(letter * 200_000))


def test_concurrent_writers_and_a_reader_never_meet_a_mixed_or_partial_file(tmp_path):
    target = tmp_path / "cache.txt"
    target.write_text("a" * 200_000)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(target), letter, 60)) for letter in "bc"]
    for w in writers:
        w.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        text = target.read_text()
        assert len(text) == 200_000 and len(set(text)) == 1, "a reader saw a partial or mixed file"
        seen.add(text[0])
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert target.read_text()[0] in "bc" and os.listdir(tmp_path) == ["cache.txt"]


def test_two_threads_of_one_process_never_tear_the_file(tmp_path):
    """speech_node saves its echo path from the audio thread and on shutdown: with one temporary name per process,
    two threads truncated and renamed the same temporary file (a torn .npz in review 25)."""
    import threading

    target = tmp_path / "shared.bin"
    errors, go = [], threading.Barrier(2)

    def writer(letter: str) -> None:
        go.wait()
        for _ in range(40):
            try:
                write_atomically(target, lambda tmp: tmp.write_bytes(letter.encode() * 300_000))
            except OSError as exc:   # a rename of a temporary file the other thread had already renamed
                errors.append(exc)
            data = target.read_bytes()
            if len(data) != 300_000 or len(set(data)) != 1:
                errors.append("a reader saw a torn or mixed file")

    threads = [threading.Thread(target=writer, args=(c,)) for c in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
