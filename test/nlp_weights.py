"""A step the NLP tests share: move a model's weights away from their initialisation."""
import torch


def away_from_init(model: torch.nn.Module, scale: float, norm_scale: float | None = None, norm_word: str = "norm"):
    """Add N(0, scale²) noise to every parameter (norm_scale² to those whose name holds norm_word). Unit norm gains
    and zero biases would hide a swapped or missing tensor, and sharper attention makes positions and caches matter."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (norm_scale if norm_scale is not None and norm_word in name else scale))
    return model
