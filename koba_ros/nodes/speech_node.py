"""speech_node: audio → /speech/utterance (koba_interfaces/Utterance), streaming, with the robot's own voice ignored.

Audio comes from the /audio topic (koba_interfaces/AudioChunk: interleaved int16 at the rate and
channel count the message states; a remote microphone or audio_capture_node), a file (`wav_file`)
or the local microphone (sounddevice).
Lifecycle: the recogniser (pocketsphinx + domain LM, or whisper from `checkpoint`) is loaded and a
microphone opened on configure, so a missing model or microphone fails configure with one line.
While /speech/speaking says the robot talks, only an early "stop" is heard (streaming.py). Decoding runs on a
worker thread; deactivate forgets an utterance in progress.
Echo cancellation (`echo_cancellation`, session 25): what tts_node plays (/speech/playback) is lined up with the
microphone's chunks by their stamps (playback_reference.py) and subtracted as the room echoes it (echo_canceller.py)
before VAD and ASR; with nothing playing the reference is zeros, and the filter keeps its echo path between sentences.
With `echo_path_file` set, the learnt echo path is also kept between runs: loaded on configure (a bad file: a warning,
a fresh start), saved on cleanup and shutdown and every `echo_path_save_s` of audio, each time only while the
canceller says it has converged (so a wrong or unlearnt path never overwrites a good one).
"""
from __future__ import annotations

import os
import threading

import numpy as np
from koba_interfaces.msg import AudioChunk, SpeakingState, Utterance
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile

from koba_ros.errors import KobaError
from koba_ros.nodes.params import declare, sensor_qos
from koba_ros.nodes.runtime import run_node
from koba_ros.speech.decode_queue import DecodeQueue
from koba_ros.speech.recognizers import QUIET_STOP_MIN_VOICED

SOURCES = ("topic", "file", "microphone")


def check_topic_name(topic: str, node_name: str, namespace: str) -> None:
    """KobaError (one line) for a name no subscription can take ("bad topic!"): refused at configure, not activate."""
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name

    try:
        validate_full_topic_name(expand_topic_name(topic, node_name, namespace))
    except Exception as exc:  # noqa: BLE001 - rclpy raises ValueError or InvalidTopicNameException
        raise KobaError(f"audio_topic: {str(exc).splitlines()[0].split(', at ')[0]}") from None


class SpeechNode(LifecycleNode):
    join_timeout_s = 5.0  # deactivate waits this long for the chunk being decoded
    def __init__(self, **kwargs):
        super().__init__("speech_node", **kwargs)
        self.source = declare(self, "source", "topic", "Audio source: topic, file or microphone.")
        self.audio_topic = declare(self, "audio_topic", "/audio", "koba_interfaces/AudioChunk audio input (any rate, "
                                   "any channel count; resampled to 16 kHz mono).")
        self.reliability = declare(self, "reliability", "reliable", "QoS reliability of the audio input.")
        self.wav_file = declare(self, "wav_file", "", "Audio file for source=file (any rate/channels).")
        self.realtime_file = declare(self, "realtime_file", True, "Play the file at real-time pace (as a microphone).")
        self.microphone = declare(self, "microphone", "", "sounddevice input device (empty: the default).")
        self.backend = declare(self, "backend", "pocketsphinx", "ASR backend: pocketsphinx or whisper.")
        self.checkpoint = declare(self, "checkpoint", "", "Whisper checkpoint file (.pt) for backend=whisper.")
        self.use_domain_lm = declare(self, "use_domain_lm", True, "pocketsphinx: domain LM (catalog, teleop) first.")
        self.fallback_confidence = declare(self, "fallback_confidence", 0.6, "pocketsphinx: below this domain "
                                           "confidence, decode again with the general model.")
        self.stop_threshold = declare(self, "stop_threshold", 1e-15, "pocketsphinx: keyword-spotting threshold of the "
                                      "\"stop\" spotter run alongside (0: no spotter; a heard stop is always "
                                      "published, whatever its confidence).")
        self.early_stops = declare(self, "early_stops", True, "pocketsphinx: publish a \"stop\" the moment the "
                                   "spotter and the main search both hear it, before the end of the utterance "
                                   "(whose own result follows).")
        self.keyword_max_words = declare(self, "keyword_max_words", 0, "pocketsphinx: the \"stop\" spotter overrides "
                                         "the main search only when that heard at most this many words (0: any "
                                         "number; 2 keeps instructions like \"top right box\" from becoming stops).")
        self.top_veto = declare(self, "top_veto", True, "pocketsphinx: the \"stop\" spotter may not turn a result "
                                "where \"top\" comes before a box word (\"the top right box\") into a stop.")
        self.top_time_veto = declare(self, "top_time_veto", True, "pocketsphinx: nor a result where the spotter's "
                                     "\"stop\" lies on a word the main search heard as \"top\" (\"at the top\").")
        self.quiet_stop_threshold = declare(self, "quiet_stop_threshold", 1e-50, "pocketsphinx: the spotter's laxer "
                                            "threshold for quiet stops, trusted only where the main search heard "
                                            "at most two words and no command (0: off).")
        self.quiet_stop_min_voiced = declare(self, "quiet_stop_min_voiced", QUIET_STOP_MIN_VOICED,
                                             "pocketsphinx: a quiet stop must hold a run of this many voiced 10 ms "
                                             "frames (a burst of noise has none; 0: no check, the default; 4 was "
                                             "measured: docs/speech.md Session 27).")
        self.teleop_grammar = declare(self, "teleop_grammar", False, "pocketsphinx: also search a JSGF grammar of "
                                      "the teleop commands; its jog wins over the LM's jog.")
        self.vad_aggressiveness = declare(self, "vad_aggressiveness", 2, "webrtcvad aggressiveness 0..3.")
        self.hangover_ms = declare(self, "hangover_ms", 240, "Silence that ends an utterance, ms.")
        self.publish_empty = declare(self, "publish_empty", False, "Publish utterances with no words (noise).")
        self.echo_cancellation = declare(self, "echo_cancellation", True, "Cancel the robot's own voice (what "
                                         "tts_node publishes on /speech/playback) from the audio before ASR "
                                         "(topic and microphone sources).")
        self.echo_tail_ms = declare(self, "echo_tail_ms", 250.0, "Echo canceller's filter length, ms: the room's "
                                    "reverberation plus the sound cards' unknown output and input delay.")
        self.echo_path_file = declare(self, "echo_path_file", "", "Keep the echo canceller's learnt echo path "
                                      "between runs in this .npz (e.g. ~/.cache/koba_ros/echo_path.npz; empty: off): "
                                      "loaded on configure, so the first sentence after a restart is cancelled too; "
                                      "saved while converged (every 60 s of audio, on cleanup and shutdown). "
                                      "Per room and loudspeaker: a path from another room is relearnt.")
        self.echo_path_save_s = 60.0   # seconds of audio between saves of the echo path (while converged)
        self.unsaved_samples = 0
        # process() (the audio thread) and save (that thread, shutdown, destroy) must not interleave: a save would read
        # weights half-way through a block's update
        self.canceller_lock = threading.Lock()
        self.canceller = None
        self.reference = None
        self.timeline = None
        self.stream = None
        self.mic = None
        # One chunk decodes at a time, across activations too: a worker that outlived deactivate's join (a chunk that
        # decodes for longer than join_timeout_s: a long utterance's final search under load) must finish it before
        # the next activation's worker feeds the same decoder.
        self.decode_lock = threading.Lock()
        self.audio = DecodeQueue(maxsize=500)  # audio and speaking states, in order, for the decoding worker
        self.worker = None
        self.player, self.player_stop = None, threading.Event()   # the file player and its own stop (one per run)
        self.running = threading.Event()
        self.utterance_pub = None
        self.subscription = None
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(SpeakingState, "/speech/speaking", self.on_speaking, latched,
                                 callback_group=ReentrantCallbackGroup())
        self.create_subscription(AudioChunk, "/speech/playback", self.on_playback, 10,
                                 callback_group=ReentrantCallbackGroup())

    # --- lifecycle -----------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        from koba_ros.speech.audio import Microphone, load_audio
        from koba_ros.speech.recognizers import check_backend_options, make_recognizer, options_set
        from koba_ros.speech.streaming import SpeechStream
        from koba_ros.speech.vad import Endpointer

        try:
            if self.source not in SOURCES:
                raise KobaError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
            sensor_qos(self.reliability)
            if self.source == "topic":
                check_topic_name(self.audio_topic, self.get_name(), self.get_namespace())
            self.file_audio = load_audio(self.wav_file) if self.source == "file" else None
            whisper = {"checkpoint": self.checkpoint}
            pocketsphinx = {"use_domain_lm": self.use_domain_lm, "fallback_confidence": self.fallback_confidence,
                            "stop_threshold": self.stop_threshold or None, "teleop_grammar": self.teleop_grammar,
                            "early_stops": self.early_stops, "keyword_max_words": self.keyword_max_words or None,
                            "top_veto": self.top_veto, "top_time_veto": self.top_time_veto,
                            "quiet_stop_threshold": self.quiet_stop_threshold or None,
                            "quiet_stop_min_voiced": self.quiet_stop_min_voiced}
            # The other backend's options set (not left at their defaults) are refused, as `koba asr` refuses them.
            check_backend_options(self.backend, options_set({**pocketsphinx, **whisper}))
            recognizer = make_recognizer(self.backend, **(whisper if self.backend == "whisper" else pocketsphinx))
            self.stream = SpeechStream(recognizer, Endpointer(self.vad_aggressiveness, hangover_ms=self.hangover_ms))
            if self.echo_cancellation and self.source != "file":
                from koba_ros.speech.echo_canceller import EchoCanceller
                from koba_ros.speech.playback_reference import MicTimeline, ReferenceBuffer

                self.canceller = EchoCanceller(tail_ms=self.echo_tail_ms)
                self.reference, self.timeline = ReferenceBuffer(), MicTimeline()
                self.load_echo_path()
            if self.source == "microphone":
                self.mic = Microphone(self.on_mic_block, self.microphone)
                self.mic.start()
        except (KobaError, ValueError) as exc:
            self.failure = str(exc)   # autostart reports it in one line
            self.get_logger().error(f"configure failed: {exc}")
            self.stream = None
            return TransitionCallbackReturn.FAILURE
        self.utterance_pub = self.create_lifecycle_publisher(Utterance, "/speech/utterance", 10)
        self.get_logger().info(f"{self.backend} ready, listening to {self.source}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        from koba_ros.speech.audio import AudioStream

        self.audio_stream = AudioStream()  # the topic's chunks are resampled as one signal (no click per chunk)
        if self.timeline is not None:
            self.timeline.reset()
        self.running.set()
        token = self.audio.start()  # earlier audio dropped; an earlier worker still decoding ends after its chunk
        self.worker = threading.Thread(target=self.decode_loop, args=(token,), daemon=True)
        self.worker.start()
        try:
            if self.source == "topic":
                self.subscription = self.create_subscription(AudioChunk, self.audio_topic, self.on_audio,
                                                             sensor_qos(self.reliability, depth=50))
            elif self.source == "file":
                # Its own stop event: a player of an earlier activation that has not ended yet must never read on.
                self.player_stop = threading.Event()
                self.player = threading.Thread(target=self.play_file, args=(self.player_stop,), daemon=True)
                self.player.start()
        except Exception as exc:  # noqa: BLE001 - undo what was started: a failed activate leaves no worker behind
            self.failure = f"activate failed: {exc}".splitlines()[0]
            self.get_logger().error(self.failure)
            self.stop_audio()
            return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.stop_audio()
        return super().on_deactivate(state)

    def stop_audio(self) -> None:
        """End the audio input, the file player and the decoding worker (which forgets a half-heard utterance)."""
        self.running.clear()
        self.player_stop.set()
        self.audio.stop()
        if self.subscription is not None:
            self.destroy_subscription(self.subscription)
            self.subscription = None
        if self.player is not None:
            self.player.join(timeout=self.join_timeout_s)
            self.player = None
        if self.worker is not None:
            self.worker.join(timeout=self.join_timeout_s)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        if self.mic is not None:
            self.mic.stop()
            self.mic = None
        self.save_echo_path()
        self.stream = None
        self.canceller = self.reference = self.timeline = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.save_echo_path()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        if self.mic is not None:   # Ctrl-C ends the node here, without a lifecycle transition
            self.mic.stop()
            self.mic = None
        self.save_echo_path()
        return super().destroy_node()

    # --- the echo path kept between runs ----------------------------------------------------------
    def echo_path(self) -> str:
        return os.path.expanduser(self.echo_path_file) if self.echo_path_file else ""

    def load_echo_path(self) -> None:
        path, canceller = self.echo_path(), self.canceller
        if not path or canceller is None or not os.path.exists(path):
            return
        try:
            canceller.load(path)
            self.get_logger().info(f"echo path loaded from {path}")
        except KobaError as exc:
            self.get_logger().warning(f"{exc}; starting with a fresh echo path")

    def save_echo_path(self) -> None:
        """Write the learnt echo path to `echo_path_file` if the canceller has converged (else keep the file)."""
        path, canceller = self.echo_path(), self.canceller
        if not path or canceller is None or not canceller.converged:
            return
        self.unsaved_samples = 0
        try:
            with self.canceller_lock:
                canceller.save(path)
        except KobaError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=60.0)

    # --- audio in ------------------------------------------------------------------------
    def enqueue(self, samples: np.ndarray) -> None:
        if not self.audio.put_audio(samples):
            self.get_logger().warning("ASR falling behind; dropping audio", throttle_duration_sec=5.0)

    def on_audio(self, msg: AudioChunk) -> None:
        from koba_ros.speech.audio import interleaved_to_mono_int16

        try:
            samples = interleaved_to_mono_int16(msg.data, msg.sample_rate, msg.channels, self.audio_stream)
            if len(samples):
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                self.enqueue(self.cancel_echo(samples, stamp))
        except KobaError as exc:
            self.get_logger().error(f"bad audio message: {exc}", throttle_duration_sec=5.0)

    def on_mic_block(self, samples: np.ndarray) -> None:
        """A block from the local microphone, captured over the block's length before now."""
        if len(samples):
            now = self.get_clock().now().nanoseconds
            self.enqueue(self.cancel_echo(samples, now - len(samples) * 1_000_000_000 // 16000))

    def cancel_echo(self, samples: np.ndarray, stamp_ns: int) -> np.ndarray:
        """The chunk with the robot's own voice removed (unchanged when echo cancellation is off)."""
        canceller, reference, timeline = self.canceller, self.reference, self.timeline
        if canceller is None or reference is None or timeline is None:
            return samples
        start = timeline.place(stamp_ns, len(samples))
        if reference.far_from(start):
            self.get_logger().warning("echo cancellation: the audio's stamps are far from the playback's (tts_node); "
                                      "stamp /audio with its capture time on the ROS clock, or set echo_cancellation "
                                      "false", throttle_duration_sec=30.0)
        played, _ = reference.take(start, len(samples))
        with self.canceller_lock:
            out = canceller.process(samples, played)
        self.unsaved_samples += len(samples)
        if self.echo_path_file and self.unsaved_samples >= self.echo_path_save_s * 16000:
            self.save_echo_path()   # so that a crash keeps it too (once converged: until then, tried every chunk)
        return out

    def on_playback(self, msg: AudioChunk) -> None:
        """What tts_node starts playing now: the echo canceller's reference."""
        from koba_ros.speech.audio import interleaved_to_mono_int16

        reference = self.reference
        if reference is None:
            return
        try:
            samples = interleaved_to_mono_int16(msg.data, msg.sample_rate, msg.channels)
            reference.add(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, samples)
        except KobaError as exc:
            self.get_logger().error(f"bad playback message: {exc}", throttle_duration_sec=5.0)

    def play_file(self, stop: threading.Event) -> None:
        step = 480   # 30 ms, as a microphone delivers it
        chunks = [self.file_audio[i:i + step] for i in range(0, len(self.file_audio), step)]
        for chunk in [*chunks, np.zeros(16000, dtype=np.int16)]:   # a second of silence closes the last utterance
            if stop.is_set():
                return
            if self.realtime_file:
                self.enqueue(chunk)
                stop.wait(step / 16000)
                continue
            # Not real time: as fast as the decoder takes it, waiting for room (a full queue used to drop most of
            # the file).
            while not self.audio.put_audio(chunk):
                if stop.wait(0.01):
                    return

    def on_speaking(self, msg: SpeakingState) -> None:
        self.audio.put_speaking(msg.speaking)  # in order with the audio around it; never blocks (decode_queue.py)

    # --- decoding ------------------------------------------------------------------------
    def decode_loop(self, token: object) -> None:
        with self.decode_lock:   # an utterance an outlived worker left open was said before this activation
            if self.stream is not None:
                self.stream.abort()
        self.decode_items(token)
        # Deactivated: an utterance half heard is forgotten, or the next activation's audio would finish it and
        # publish words said before the deactivation. (Not when a newer activation's worker already decodes.)
        with self.decode_lock:
            stream = self.stream
            if stream is not None and self.audio.token is None:
                stream.abort()

    def decode_items(self, token: object) -> None:
        while (item := self.audio.get(token)) is not None:
            kind, value = item
            try:
                with self.decode_lock:
                    if kind == "speaking":
                        self.stream.set_speaking(value)
                    else:
                        for utterance in self.stream.feed(value):
                            self.publish(utterance)
            except KobaError as exc:
                self.get_logger().error(str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug in one chunk must not leave the node deaf
                self.get_logger().error(f"could not decode an audio chunk: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=5.0)

    def publish(self, u) -> None:
        if not u.text and not self.publish_empty:
            return
        msg = Utterance(text=u.text, confidence=float(u.confidence), alternatives=list(u.alternatives),
                        audio_duration=float(u.audio_duration), latency=float(u.latency), backend=u.backend)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.utterance_pub.publish(msg)
        self.get_logger().info(f"heard {u.text!r} ({u.confidence:.2f}, {u.latency * 1000:.0f} ms after speech)")


def main(args=None):
    run_node(SpeechNode, args)


if __name__ == "__main__":
    main()
