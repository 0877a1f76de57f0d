"""koba pick --scene FILE --target INDEX --destination BOX [--no-motion] [--json]: one pick in the simulated cell.

Renders the scene, perceives it, finds the target among the perceived objects, and (unless --no-motion)
moves it with the picker; `success` is simulator ground truth that the target rests in the destination box.
"""
HELP = "Pick a scene object (by index) and place it in a box, in the simulated cell."


def add_arguments(p):
    from koba_ros.sim.layout import BOXES

    p.add_argument("--scene", required=True, help="Scene file (JSON, see DESIGN.md).")
    p.add_argument("--target", type=int, required=True, help="Index of the object in the scene's objects.")
    p.add_argument("--destination", required=True, choices=BOXES, help="Box to put it in.")
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


def run(args):
    from koba_ros.cli import print_json
    from koba_ros.picking.session import CellSession, check_index
    from koba_ros.sim.scene import load_scene

    scene = load_scene(args.scene)
    check_index(scene, args.target)
    with CellSession(scene, gui=args.gui) as session:
        out = run_pick(session, args.target, args.destination, args.no_motion, dialogue=[])
    if args.json:
        print_json(out)
    else:
        print(f"{out['status']}: {out['message']} (success: {out['success']})")
    return 0 if out["status"] == "done" else 1
