"""koba pick --scene FILE (INSTRUCTION [--answer TEXT]... | --target INDEX --destination BOX) [--no-motion] [--json].

One pick in the simulated cell, named by index or said in words (then grounded, with questions that
each consume the next --answer; koba_ros.grounding).

Renders the scene, perceives it, finds the target among the perceived objects, and (unless --no-motion)
moves it with the picker; `success` is simulator ground truth that the target rests in the destination box.
"""
HELP = "Pick a scene object (by instruction or index) and place it in a box, in the simulated cell."


def add_arguments(p):
    from koba_ros.sim.layout import BOXES

    p.add_argument("--scene", required=True, help="Scene file (JSON, see DESIGN.md).")
    p.add_argument("instruction", nargs="?", default=None, help="What to do, in words (e.g. \"put the duck in "
                   "the top left box\"); or name the object with --target and --destination.")
    p.add_argument("--answer", action="append", default=[], help="Answer to the robot's next question (repeat).")
    p.add_argument("--model", default="", help="Grounding weights (.pt) or ensemble file (.json); "
                   "default models/grounding/grounding_default.json.")
    p.add_argument("--target", type=int, default=None, help="Index of the object in the scene's objects.")
    p.add_argument("--destination", default=None, choices=BOXES, help="Box to put it in.")
    p.add_argument("--no-motion", action="store_true", help="Perceive and plan only; do not move the arm.")
    p.add_argument("--gui", action="store_true", help="Show the PyBullet window and move in real time.")
    p.add_argument("--json", action="store_true", help="Print one JSON object.")


def result(status, target, destination, dialogue, success, timing_ms, message) -> dict:
    """DESIGN.md's `koba pick` JSON (plus a one-line message)."""
    return {"status": status, "target": target, "destination": destination, "dialogue": dialogue,
            "success": success, "timing_ms": timing_ms, "message": message}


def run_pick(session, target: int, destination: str, no_motion: bool, dialogue: list) -> dict:
    """Perceive, find scene object `target`, plan, and move it unless no_motion (shared with the spoken path)."""
    from koba_ros.errors import KobaError

    _, objects = session.look()
    obj = session.perceived(objects, target)
    if obj is None:
        return result("failed", target, destination, dialogue, None if no_motion else False, session.timing_ms,
                      f"object {target} is not visible to the camera")
    try:
        session.plan(obj, destination)
    except KobaError as exc:
        return result("rejected", target, destination, dialogue, None if no_motion else False, session.timing_ms,
                      str(exc))
    if no_motion:
        return result("done", target, destination, dialogue, None, session.timing_ms, "planned; not moved")
    outcome = session.pick(target, obj, destination)
    success = session.resting_box(target) == destination
    return result("done" if outcome.success else "failed", target, destination, dialogue, success,
                  session.timing_ms, outcome.message)


def run_spoken(session, instruction: str, answers: list[str], no_motion: bool, model: str = "") -> dict:
    """Ground the instruction (asking, answered by `answers`) and pick what it means."""
    import time

    from koba_ros.errors import KobaError
    from koba_ros.grounding.dialogue import converse
    from koba_ros.grounding.grounder import Grounder

    _, objects = session.look()
    start = time.perf_counter()
    grounder = Grounder(model or None)
    session.timing_ms["load_model"] = round((time.perf_counter() - start) * 1000, 1)
    start = time.perf_counter()
    dialogue, reply = converse(grounder, objects, instruction, answers)
    session.timing_ms["grounding"] = round((time.perf_counter() - start) * 1000, 1)
    # An answer no question used is refused, not ignored (as --answer with --target is): it was meant for a question
    # the robot did not ask, and a "stop" among them must not let the arm move (a spoken stop always wins).
    unused = answers[sum(turn["role"] == "user" for turn in dialogue.history) - 1:]
    if unused:
        raise KobaError(f"--answer {', '.join(map(repr, unused))} answered no question (the robot said: "
                        f"{reply.text!r}); nothing was moved")
    if reply.status != "done":
        status = "needs_answer" if reply.status == "question" else "rejected"
        return result(status, None, None, dialogue.history, None, session.timing_ms, reply.text)
    target = session.scene_index_of(objects).get(objects[reply.target].id)
    if target is None:
        return result("failed", None, reply.destination, dialogue.history, None if no_motion else False,
                      session.timing_ms, "the object I grounded is not one of the scene's objects")
    return run_pick(session, target, reply.destination, no_motion, dialogue.history)


def run(args):
    import os

    from koba_ros.cli import print_json
    from koba_ros.errors import KobaError
    from koba_ros.picking.session import CellSession, check_index
    from koba_ros.sim.scene_file import read_scene_file

    if (args.instruction is None) == (args.target is None and args.destination is None):
        raise KobaError("give either an INSTRUCTION or --target and --destination")
    if args.instruction is None and (args.target is None or args.destination is None):
        raise KobaError("--target and --destination go together")
    if args.instruction is None and (args.answer or args.model):  # given but unused: refused, not ignored
        given = " and ".join(name for name, value in (("--answer", args.answer), ("--model", args.model)) if value)
        raise KobaError(f"{given} go{'es' if ' and ' not in given else ''} with an INSTRUCTION, not with --target")
    scene = read_scene_file(args.scene)
    if args.instruction is None:
        check_index(scene, args.target)
    if args.gui and not os.environ.get("DISPLAY"):   # PyBullet's GUI would end the process itself, without a word
        raise KobaError("--gui needs a display and DISPLAY is not set; leave out --gui to run headless")
    with CellSession(scene, gui=args.gui) as session:
        if args.instruction is None:
            out = run_pick(session, args.target, args.destination, args.no_motion, dialogue=[])
        else:
            out = run_spoken(session, args.instruction, args.answer, args.no_motion, args.model)
    if args.json:
        print_json(out)
    else:
        print(f"{out['status']}: {out['message']} (success: {out['success']})")
    return 0 if out["status"] == "done" else 1
