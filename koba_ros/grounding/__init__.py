"""Instruction grounding: which perceived object and box an instruction means, with questions when unsure."""
