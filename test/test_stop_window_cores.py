"""The ROS-free cores of the stop-repeat window: tts_node's ReplyQueue (what a stop drops of the sentences still to
say) and teleop_node's StopReplies (which stops are answered). Plain tests: no rclpy, no espeak-ng."""
import threading

from koba_ros.speech.reply_queue import ReplyQueue
from koba_ros.teleop.commands import STOP_REPEAT_S
from koba_ros.teleop.motions import StopReplies

S = 1_000_000_000   # ns


def texts(replies: ReplyQueue) -> list[str]:
    return [text for _, text in replies.queue]


def test_a_stop_drops_the_older_sentences_and_keeps_the_newer():
    replies = ReplyQueue()
    replies.put(10 * S, "I did not understand the distance.")
    replies.put(11 * S, "Moved left 2 centimeters.")
    replies.put(13 * S, "Holding still.")   # published after the stop, came here before it
    assert replies.on_command("stop", now_ns=12 * S) == 2
    assert texts(replies) == ["Holding still."]
    assert replies.stop_cutoff == 12 * S


def test_a_stamp_earlier_than_the_clock_is_the_cutoff_and_a_zero_or_later_one_is_not():
    replies = ReplyQueue()
    replies.put(10 * S, "old")
    replies.put(12 * S, "Holding still.")   # the reply overtook the stop on its way here
    assert replies.on_command("stop", now_ns=13 * S, stamp_ns=11 * S) == 1
    assert texts(replies) == ["Holding still."]
    assert replies.stop_cutoff == 11 * S
    for stamp_ns, cutoff in ((0, 30 * S), (40 * S, 35 * S)):   # unstamped (typed); a stamp ahead of the clock
        replies.stop_cutoff = None
        replies.on_command("halt", now_ns=cutoff, stamp_ns=stamp_ns)
        assert replies.stop_cutoff == cutoff


def test_a_second_stop_within_the_window_reuses_the_first_cutoff():
    replies = ReplyQueue()
    replies.put(10 * S, "old")
    replies.on_command("stop", now_ns=11 * S)
    replies.put(12 * S, "Holding still.")   # teleop's answer to the first stop only
    assert replies.on_command("stop moving", now_ns=13 * S) == 0
    assert texts(replies) == ["Holding still."]
    assert replies.stop_cutoff == 11 * S
    late = 11 * S + int((STOP_REPEAT_S + 0.5) * S)   # after the window: a stop sets its own cutoff
    assert replies.on_command("stop", now_ns=late) == 1
    assert replies.empty() and replies.stop_cutoff == late


def test_a_teleop_command_resets_the_window_and_an_instruction_does_not():
    replies = ReplyQueue()
    replies.on_command("stop", now_ns=10 * S)
    replies.put(11 * S, "Holding still.")
    assert replies.on_command("move left 2 centimeters", now_ns=11 * S, teleop=False) == 0
    assert replies.stop_cutoff == 10 * S   # /instruction: teleop_node did not hear it
    assert replies.on_command("move left 2 centimeters", now_ns=11 * S) == 0
    assert replies.stop_cutoff is None and texts(replies) == ["Holding still."]
    replies.put(12 * S, "Moved left 2 centimeters.")
    assert replies.on_command("stop", now_ns=13 * S) == 2   # teleop_node answers this one: what came before goes
    assert replies.empty()


def test_a_text_that_is_no_command_does_nothing():
    replies = ReplyQueue()
    replies.on_command("stop", now_ns=10 * S)
    replies.put(11 * S, "Holding still.")
    assert replies.on_command("what a lovely day", now_ns=12 * S) == 0
    assert replies.stop_cutoff == 10 * S and texts(replies) == ["Holding still."]


def test_the_queue_refuses_when_full_and_close_ends_the_worker():
    replies = ReplyQueue(maxsize=2)
    assert replies.put(1, "a") and replies.put(2, "b")
    assert not replies.put(3, "c")
    assert replies.qsize() == 2 and replies.get() == "a"
    taken = []
    worker = threading.Thread(target=lambda: taken.append(replies.get()) or taken.append(replies.get()))
    worker.start()
    worker.join(1.0)   # took "b", waits for the next
    replies.close()
    worker.join(5.0)
    assert not worker.is_alive() and taken == ["b", None]


def test_stop_replies_answer_the_first_stop_not_a_repeat_and_again_after_a_command_or_the_window():
    replies = StopReplies()
    assert replies.answer(1, now=100.0)                          # the first stop
    assert not replies.answer(2, now=100.5)                      # heard again, no command between
    assert not replies.answer(3, now=101.0)                      # and again: still within the first answer's window
    assert replies.answer(5, now=101.5)                          # a command (generation 4) came between
    assert replies.answer(6, now=101.5 + STOP_REPEAT_S + 0.1)    # after the window
    assert not replies.answer(7, now=101.5 + STOP_REPEAT_S + 0.2)
