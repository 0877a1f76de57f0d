"""A trained LM as `koba lm sample` and `koba lm eval` read it: model, tokenizer and training config, from the
checkpoint folder `koba lm train` wrote (or its run folder)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from koba_ros.nlp.checkpoint import check_compatible, checkpoint_folder, load_model_state, recorded_config
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import eos_starts_documents
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.tokenizer import build_tokenizer


@dataclass
class TrainedLM:
    model: TransformerLM
    tokenizer: object
    config: dict  # the training config recorded in the checkpoint (TrainConfig.to_dict())
    path: Path

    @property
    def document_eos(self) -> int | None:
        """The id that ends a document when the run was trained with document_mask (scores must then mask the
        same way), else None."""
        return self.tokenizer.eos_id if self.config.get("document_mask") else None

    @property
    def eos_starts(self) -> bool:
        """The tokenizer's bos is its eos and starts every text: the one eos between two documents belongs to the
        next (data.eos_starts_documents), for the document mask and for turn-over instances alike."""
        return eos_starts_documents(self.tokenizer)


def load_trained(checkpoint: str | Path, device: str = "cpu") -> TrainedLM:
    """The model config and the tokenizer come from the checkpoint's recorded training config; the weights are
    checked against that model before loading (one-line errors for a missing, foreign or bare checkpoint)."""
    path = checkpoint_folder(checkpoint)
    config = recorded_config(path)
    model_state = load_model_state(path)  # the weights only: optimizer.safetensors (~2x) is neither read nor needed
    model = TransformerLM(TransformerConfig.from_dict(config["model"]))
    check_compatible(model, model_state, path)
    model.load_state_dict(model_state)
    tokenizer = build_tokenizer(config.get("tokenizer", "byte"), config.get("vocab", ""), config.get("merges", ""))
    return TrainedLM(model.to(device).eval(), tokenizer, config, path)
