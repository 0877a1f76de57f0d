"""The one exception type that user-facing code raises for bad input.

The CLI prints it as a single line on stderr and exits non-zero; nodes log it and keep
their state. Anything else escaping is a bug.
"""


class KobaError(Exception):
    """Bad input or an impossible request, explained in one line."""


def reason(exc: BaseException, limit: int = 160) -> str:
    """A third-party exception as a short one-line reason: its first line (torch's weights_only refusal runs to seven
    lines and asks to file an issue), led by its type when the text alone says little ("KeyError: 'config'")."""
    text = str(exc)
    if "Unpickler error:" in text:  # torch.load(weights_only=True): the reason follows its long preamble
        detail = next((line.strip() for line in text.split("Unpickler error:", 1)[1].splitlines() if line.strip()), "")
        return f"not a torch weights file ({detail})"[:limit] if detail else "not a torch weights file"
    if text.startswith("Weights only load failed"):  # the same refusal without that marker (a blocked GLOBAL)
        detail = next((line.strip() for line in text.splitlines()[1:]
                       if line.strip() and not line.strip().startswith("Check the documentation")), "")
        return f"not a torch weights file ({detail})"[:limit] if detail else "not a torch weights file"
    if isinstance(exc, KeyError) and str(exc).strip("'").isdigit():  # the unpickler on a text file: a byte value
        return "not a torch weights file"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    text = (f"{type(exc).__name__}: {first}" if first else type(exc).__name__) if len(first) < 20 else first
    return text if len(text) <= limit else text[: limit - 3] + "..."
