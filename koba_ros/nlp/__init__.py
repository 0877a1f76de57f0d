"""The NLP/LLM library: a small transformer toolkit (B2T, SHAPE, ALONE, Spike No More, WSO, model expansion).

Stable API for other domains (grounding uses the text encoder):
    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.model import TextEncoder, TransformerLM
    from koba_ros.nlp.tokenizer import ByteTokenizer
"""
