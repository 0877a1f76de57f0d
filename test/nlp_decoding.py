"""A check the NLP tests share: decoding through a KV cache gives the logits of the full forward."""
import torch


def assert_cached_decoding_matches_full(model, ids: torch.Tensor, prefill: int, cache) -> None:
    """Prefill `prefill` tokens into `cache`, then feed the rest one at a time: the logits equal the full forward's."""
    with torch.no_grad():
        stepped = torch.cat([model(ids[:, :prefill], cache=cache)[0]] +
                            [model(ids[:, i:i + 1], cache=cache)[0] for i in range(prefill, ids.shape[1])], dim=1)
        torch.testing.assert_close(stepped, model(ids)[0], atol=1e-5, rtol=0)
