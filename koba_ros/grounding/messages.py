"""GroundingResult from a dialogue turn (objects arrive through koba_ros.perception.messages.msg_to_objects)."""
from __future__ import annotations

from koba_ros.grounding.dialogue import Reply
from koba_ros.grounding.grounder import Grounding
from koba_ros.perception.objects import PerceivedObject

STATUS = {"done": 0, "question": 1, "rejected": 2, "cancelled": 2}   # GroundingResult RESOLVED/CLARIFY/REJECTED


def fill_result(msg, instruction: str, reply: Reply, objects: list[PerceivedObject],
                grounding: Grounding | None) -> None:
    """Fill a GroundingResult from the dialogue's reply (ids are the perceived objects' ids)."""
    msg.instruction = instruction
    msg.status = STATUS[reply.status]
    msg.target_id = objects[reply.target].id if reply.target is not None else -1
    msg.destination = reply.destination or ""
    msg.confidence = float(reply.confidence)
    msg.question = reply.text if reply.status == "question" else ""
    msg.explanation = reply.text
    if grounding is not None:
        ranked = grounding.ranked()[:5]
        msg.candidate_ids = [objects[i].id for i, _ in ranked]
        msg.candidate_scores = [float(p) for _, p in ranked]
    else:
        msg.candidate_ids = [objects[i].id for i in reply.candidates]
        msg.candidate_scores = []
