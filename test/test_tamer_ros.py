"""tamer_learner_node + simulated_human_node over DDS: transitions and images flow out, the person's feedback
flows back and is credited; bad feedback is dropped while the learner keeps stepping."""
import math
import time

import pytest

pytestmark = pytest.mark.ros


def test_learner_and_simulated_human_talk_over_dds(ros_context):
    from koba_interfaces.msg import HumanFeedback, TamerTransition
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from koba_ros.nodes.executor import QueueOnceExecutor
    from koba_ros.nodes.runtime import shutdown_executor
    from koba_ros.nodes.simulated_human_node import SimulatedHumanNode
    from koba_ros.nodes.tamer_learner_node import TamerLearnerNode

    learner = TamerLearnerNode(context=ros_context, parameter_overrides=[
        Parameter("rate_hz", value=20.0), Parameter("agent", value="dqn_tamer"),
        Parameter("agent_settings", value="explore_temperature=0.1, avoid_repeats=1")])
    config = learner.session.agent.config
    assert config.explore_temperature == 0.1 and config.avoid_repeats and config.revisit_trust == 1.0
    human = SimulatedHumanNode(context=ros_context, parameter_overrides=[
        Parameter("p_feedback", value=1.0), Parameter("half_life", value=0.0),
        Parameter("delay", value="uniform:0.05:0.1")])
    probe = Node("tamer_probe", context=ros_context)
    seen = {"transition": [], "feedback": [], "image": []}
    probe.create_subscription(TamerTransition, "/tamer/transition", lambda m: seen["transition"].append(m), 50)
    probe.create_subscription(HumanFeedback, "/human_feedback", lambda m: seen["feedback"].append(m), 50)
    probe.create_subscription(Image, "/tamer/image", lambda m: seen["image"].append(m), 5)
    bad = probe.create_publisher(HumanFeedback, "/human_feedback", 10)
    executor = QueueOnceExecutor(context=ros_context)
    for n in (learner, human, probe):
        executor.add_node(n)
    try:
        deadline = time.monotonic() + 30.0
        sent_bad, steps_when_bad = False, 0
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if not sent_bad and len(seen["transition"]) >= 5:
                msg = HumanFeedback(value=math.nan, confidence=1.0, source="test")
                msg.header.stamp = learner.get_clock().now().to_msg()
                bad.publish(msg)
                future = HumanFeedback(value=1.0, confidence=1.0, source="test")
                future.header.stamp.sec = future.header.stamp.sec + int(time.time()) + 600
                bad.publish(future)
                sent_bad, steps_when_bad = True, len(seen["transition"])
            if (len(seen["transition"]) >= 40 and learner.session.agent.feedback_count >= 10
                    and sum(learner.session.rejected.values()) >= 2):
                break
    finally:
        for n in (learner, human, probe):
            executor.remove_node(n)
        shutdown_executor(executor)
        for n in (learner, human, probe):
            n.destroy_node()
    t = seen["transition"][-1]
    assert t.env == "maze" and t.step >= 1 and t.total_steps >= 40 and 0 <= t.action < 4
    assert 0.0 < t.alpha_h <= 1.0 and t.header.stamp.sec > 0  # stamped when shown: the person's reference
    assert all(b.total_steps == a.total_steps + 1 for a, b in zip(seen["transition"][:-1], seen["transition"][1:],
                                                                        strict=True))
    assert seen["image"] and seen["image"][0].encoding == "rgb8"
    simulated = [m for m in seen["feedback"] if m.source == "simulated"]
    assert len(simulated) >= 10 and all(m.value in (-1.0, 1.0) for m in simulated)
    assert learner.session.agent.feedback_count >= 10  # credited to steps by their stamps
    assert learner.session.rejected.get("bad value") == 1 and learner.session.rejected.get("future stamp") == 1
    assert len(seen["transition"]) >= steps_when_bad + 20  # still stepping after the bad feedback


def test_learner_node_checks_output_dir_at_construction(ros_context, tmp_path):
    import torch
    from rclpy.parameter import Parameter

    from koba_ros.errors import KobaError
    from koba_ros.nodes.tamer_learner_node import TamerLearnerNode

    a_file = tmp_path / "file"
    a_file.write_text("")
    finished = tmp_path / "finished"
    finished.mkdir()
    torch.save({"env": "maze"}, finished / "checkpoint.pt")
    for params, message in (
            ({"output_dir": str(a_file)}, f"output_dir {a_file} is a file"),  # was: FileExistsError in a timer
            ({"output_dir": str(finished)}, "already holds a run (checkpoint.pt); add resume"),  # was: overwritten
            ({"output_dir": str(finished), "resume": True}, "is not a koba tamer checkpoint"),  # was: KeyError
            ({"resume": True}, "resume needs output_dir")):
        with pytest.raises(KobaError) as info:
            TamerLearnerNode(context=ros_context, parameter_overrides=[Parameter(k, value=v)
                                                                       for k, v in params.items()])
        assert str(info.value).startswith("tamer_learner_node: ") and message in str(info.value)
    assert a_file.read_text() == "" and sorted(p.name for p in finished.iterdir()) == ["checkpoint.pt"]


def test_simulated_human_node_logs_and_skips_a_transition_outside_the_maze(ros_context):
    from koba_interfaces.msg import TamerTransition
    from rclpy.parameter import Parameter

    from koba_ros.nodes.simulated_human_node import SimulatedHumanNode

    human = SimulatedHumanNode(context=ros_context, parameter_overrides=[
        Parameter("p_feedback", value=1.0), Parameter("half_life", value=0.0)])
    try:
        human.on_transition(TamerTransition(env="maze", total_steps=1, state=-1, action=0, next_state=98))
        assert human.human.pending == [] and human.human.observed == 0  # numpy judged cell 99 for state -1
        human.on_transition(TamerTransition(env="maze", total_steps=2, state=0, action=1, next_state=1))
        assert len(human.human.pending) == 1  # still watching
    finally:
        human.destroy_node()
