"""koba face IMAGE_OR_VIDEO [--json]: read facial expressions and the feedback they would give (face_feedback_node's
core)."""
from koba_ros.commands.arg_types import non_negative_float, positive_int

HELP = "Read the facial expression in an image or video and the human feedback it gives (face_feedback_node's core)."


def add_arguments(p):
    p.add_argument("path", help="An image (png, jpg, ...) or a video file.")
    p.add_argument("--calibrate", type=non_negative_float, default=0.0,
                   help="Videos: seconds of the person's rest face at the start to calibrate on (default 0: "
                        "population prior).")
    p.add_argument("--annotated", default="", help="Write the annotated image (images only) to this file.")
    p.add_argument("--max-frames", type=positive_int, default=3000, help="Videos: read at most this many frames.")
    p.add_argument("--json", action="store_true", help="Print a JSON object.")


def summarize(results, events, frames: int) -> dict:
    """The one JSON object: faces (most in any frame), the read face's expression, the feedback it gives."""
    faces = max((len(r.faces) for r in results), default=0)
    read = [r for r in results if r.expression]
    last = read[-1] if read else None
    net = sum(e.value for e in events)
    skipped = sorted({r.skipped for r in results if r.skipped})
    return {
        "faces": faces,
        "expression": last.expression.label if last else None,
        "feedback": (net > 0) - (net < 0),
        "confidence": round(last.expression.confidence, 3) if last else None,
        "events": [e.as_dict() for e in events],
        "frames": frames,
        "frames_read": len(read),
        "features": last.features.as_dict() if last else None,
        "skipped": skipped,
    }


def run(args):
    import itertools

    from koba_ros.cli import print_json
    from koba_ros.errors import KobaError
    from koba_ros.face.frames import is_image_path, read_image, read_video
    from koba_ros.face.landmarks import check_frame
    from koba_ros.face.pipeline import FaceConfig, FacePipeline, read_still

    if args.calibrate < 0:
        raise KobaError(f"--calibrate must be >= 0, got {args.calibrate}")
    if args.annotated:  # checked before any work, and never silently ignored
        import cv2

        if not is_image_path(args.path):
            raise KobaError("--annotated writes an annotated image, so it needs an image, not a video")
        if not cv2.haveImageWriter(args.annotated):
            raise KobaError(f"--annotated {args.annotated}: no image format for that name (use .png or .jpg)")
    # The file and its first frame are checked before FaceMesh loads: its native logging would otherwise print
    # lines of its own ahead of the one-line error.
    if is_image_path(args.path):
        result, events = read_still(check_frame(read_image(args.path)))
        summary = summarize([result], events, 1)
        if args.annotated:
            import cv2

            from koba_ros.face.annotate import annotate

            result.events = events
            img = annotate(read_image(args.path), result)
            if not cv2.imwrite(args.annotated, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise KobaError(f"cannot write {args.annotated}")
    else:
        frames = read_video(args.path, args.max_frames)
        first = next(frames)  # read_video raises for a file with no readable frame
        check_frame(first[1])
        pipeline = FacePipeline(FaceConfig(calibration_s=args.calibrate), video=True)
        results, events = [], []
        try:
            for t, frame in itertools.chain([first], frames):
                r = pipeline.process(frame, t)
                results.append(r)
                events += r.events
        finally:
            pipeline.close()
        summary = summarize(results, events, len(results))
    if args.json:
        print_json(summary)
    else:
        what = summary["expression"] or "no readable face"
        print(f"{summary['faces']} face(s); {what}; feedback {summary['feedback']:+d} "
              f"({len(summary['events'])} event(s))")
