"""Episodic kNN memory: question embeddings (keys) mapped to FIFO lists of response embeddings.

Public API:
    EpisodicMemory(dim, max_keys=10000, max_per_key=100, max_text_chars=400)
        .add(key_text, key_emb, values, texts)       append responses to a question's FIFO list
        .retrieve(query_emb, k) -> (values, texts, key_similarities)
        .top_keys(query_emb, k) -> [(key_text, cosine), ...]
        .responses(key_text) -> [text, ...]
        .key_texts, .num_keys, .num_entries, .dim, .max_keys, .max_per_key, .max_text_chars
        .to_bytes(), .save(path), EpisodicMemory.load(path, dim=, max_keys=, max_per_key=)
    MemoryFileError: a memory file is missing, corrupt, or not what the caller expects.
    valid_text(text) -> str: text with each surrogate code point replaced by U+FFFD.
    unit_vector(v) -> float32 array, or None when v is zero or not finite.

Text rule: a Python str may hold lone surrogates, which UTF-8 (the file format, JSON, tokenisers)
cannot encode. Every text entering the memory (question keys, response texts, key lookups) goes
through `valid_text` first, which replaces each surrogate code point with U+FFFD, so the same raw
question always maps to the same key and saving never fails.

Embedding rule: `add` raises ValueError for response embeddings that are not finite and for a new
key whose embedding is zero or not finite, since a NaN would spread to every later centroid and key
search; a query embedding with no direction (zero or not finite) retrieves nothing.

A key is identified by its question text (after `valid_text`). Each key holds at most `max_per_key`
(L) responses, oldest dropped first; at most `max_keys` (N) keys are held, and a new key evicts the
oldest-inserted one. Key embeddings are stored unit-normalised (norm taken in float64, so no overflow
or underflow) in one contiguous matrix, so a top-k search is one matrix-vector product plus a
partial sort; ties are broken by insertion order (older key first).
An evicted key's row is reused by the next new key; every key remembers its insertion number.

File format (one safetensors file, never pickle): tensors `keys` (n, d) float32 in row order,
`values` (entries, d) float32 (each key's responses, oldest first, keys in row order), `text_bytes`
uint8 (the response texts' UTF-8, concatenated) and `text_ends` int64 (end offset of each text).
Response texts live in a tensor because safetensors caps its JSON header at 100 MB (10k keys x 100
responses x 400 characters would not fit). The header metadata holds `format_version`, `memoryr`
(JSON: dim, N, L, text cap, key texts, insertion numbers, counts) and `sha256` of that JSON plus
every tensor's bytes. The header is written with sorted keys, so equal memories give equal bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from safetensors import SafetensorError, safe_open

FORMAT_VERSION = 1
_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8", np.dtype(np.int64): "I64"}
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """text with each surrogate code point (which UTF-8 cannot encode) replaced by U+FFFD: savable, tokenisable."""
    return _SURROGATES.sub("\ufffd", text)


def unit_vector(v: np.ndarray) -> np.ndarray | None:
    """v scaled to unit length as float32 (norm in float64: no overflow), or None when v has no direction."""
    v = np.asarray(v, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if math.isfinite(norm) and norm > 0 else None


def _raw(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of an array's bytes, for hashing and writing without a copy."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


class MemoryFileError(Exception):
    """A memory file is missing, corrupt, or does not match what the caller expects."""


class EpisodicMemory:
    """Question keys -> FIFO lists of response embeddings and texts, searched by cosine similarity."""

    def __init__(self, dim: int, max_keys: int = 10000, max_per_key: int = 100, max_text_chars: int = 400):
        if dim < 1 or max_keys < 1 or max_per_key < 1 or max_text_chars < 0:
            raise ValueError(
                f"EpisodicMemory needs dim, max_keys, max_per_key >= 1 and max_text_chars >= 0; got "
                f"dim={dim}, max_keys={max_keys}, max_per_key={max_per_key}, max_text_chars={max_text_chars}"
            )
        self.dim, self.max_keys, self.max_per_key, self.max_text_chars = dim, max_keys, max_per_key, max_text_chars
        self._keys = np.zeros((min(max_keys, 64), dim), dtype=np.float32)  # unit rows; grows by doubling
        self._seqs = np.zeros(len(self._keys), dtype=np.int64)  # insertion number of the key in each row
        self._row_of: dict[str, int] = {}
        self._key_texts: list[str] = []  # per row
        self._values: list[np.ndarray] = []  # per row, (count, dim) float32, oldest first
        self._texts: list[list[str]] = []  # per row, parallel to _values
        self._next_seq = 0
        self._num_entries = 0

    @property
    def num_keys(self) -> int:
        """Number of question keys held."""
        return len(self._key_texts)

    @property
    def num_entries(self) -> int:
        """Number of responses held, over all keys."""
        return self._num_entries

    @property
    def key_texts(self) -> list[str]:
        """Question texts held, oldest-inserted first."""
        order = np.argsort(self._seqs[: self.num_keys], kind="stable")
        return [self._key_texts[r] for r in order]

    def responses(self, key_text: str) -> list[str]:
        """Stored response texts of one question, oldest first (empty when the question is unknown)."""
        row = self._row_of.get(valid_text(key_text))
        return [] if row is None else list(self._texts[row])

    def add(self, key_text: str, key_emb: np.ndarray, values: np.ndarray, texts: list[str]) -> None:
        """Append responses to a question's FIFO list, creating (and maybe evicting) a key as needed."""
        values = np.asarray(values, dtype=np.float32).reshape(-1, self.dim)
        if len(values) != len(texts):
            raise ValueError(f"add got {len(values)} value vectors but {len(texts)} texts")
        if len(values) == 0:
            return
        if not np.isfinite(values).all():
            raise ValueError("add got a value vector that is not finite (NaN or infinite)")
        key_text = valid_text(key_text)
        row = self._row_of.get(key_text)
        if row is None:
            key = unit_vector(np.reshape(key_emb, self.dim))
            if key is None:
                raise ValueError(f"add got a zero or non-finite embedding for the new key {key_text[:80]!r}")
            row = self._new_key(key_text, key)
        texts = [valid_text(t[: self.max_text_chars]) for t in texts]
        merged = np.concatenate([self._values[row], values])[-self.max_per_key :]
        self._num_entries += len(merged) - len(self._values[row])
        self._values[row] = np.ascontiguousarray(merged)
        self._texts[row] = (self._texts[row] + texts)[-self.max_per_key :]

    def _new_key(self, key_text: str, key: np.ndarray) -> int:
        """Place a new key (unit vector) in a free row, evicting the oldest-inserted key when N keys are held."""
        n = self.num_keys
        empty = np.zeros((0, self.dim), np.float32)
        if n == self.max_keys:
            row = int(np.argmin(self._seqs[:n]))
            del self._row_of[self._key_texts[row]]
            self._num_entries -= len(self._values[row])
            self._key_texts[row], self._values[row], self._texts[row] = key_text, empty, []
        else:
            row = n
            if n == len(self._keys):
                grown = min(2 * n, self.max_keys)
                self._keys = np.concatenate([self._keys, np.zeros((grown - n, self.dim), np.float32)])
                self._seqs = np.concatenate([self._seqs, np.zeros(grown - n, np.int64)])
            self._key_texts.append(key_text)
            self._values.append(empty)
            self._texts.append([])
        self._keys[row] = key
        self._seqs[row] = self._next_seq
        self._next_seq += 1
        self._row_of[key_text] = row
        return row

    def _top_rows(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the k keys most cosine-similar to the query (older key first on ties), and their cosines."""
        n = self.num_keys
        q = None if n == 0 or k < 1 else unit_vector(np.reshape(query_emb, self.dim))
        if q is None:  # empty memory, k < 1, or a query with no direction
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        # einsum runs single-threaded: a threaded BLAS matvec slows ~10x when its cores are shared
        # (other ranks, torch's threads), and one thread gives the same bits whatever the thread count
        sims = np.einsum("ij,j->i", self._keys[:n], q)
        k = min(k, n)
        if k < n:
            threshold = np.partition(sims, n - k)[n - k]
            candidates = np.flatnonzero(sims >= threshold)
        else:
            candidates = np.arange(n)
        order = np.lexsort((self._seqs[candidates], -sims[candidates]))[:k]
        rows = candidates[order]
        return rows, sims[rows]

    def top_keys(self, query_emb: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k stored questions nearest the query, with their cosine similarities, best first."""
        rows, sims = self._top_rows(query_emb, k)
        return [(self._key_texts[r], float(s)) for r, s in zip(rows, sims)]

    def retrieve(self, query_emb: np.ndarray, k: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        """B(M, q): the union of the responses of the top-k keys, as (values (m, d), texts, key cosines)."""
        rows, sims = self._top_rows(query_emb, k)
        if len(rows) == 0:
            return np.zeros((0, self.dim), np.float32), [], sims
        values = self._values[rows[0]] if len(rows) == 1 else np.concatenate([self._values[r] for r in rows])
        texts = [t for r in rows for t in self._texts[r]]
        return values, texts, sims

    # ---- persistence -------------------------------------------------------------------------

    def _state(self) -> dict:
        """Everything but the tensors, as JSON-able data (rows in row order)."""
        n = self.num_keys
        return {
            "dim": self.dim,
            "max_keys": self.max_keys,
            "max_per_key": self.max_per_key,
            "max_text_chars": self.max_text_chars,
            "next_seq": self._next_seq,
            "key_texts": self._key_texts,
            "key_seqs": self._seqs[:n].tolist(),
            "counts": [len(v) for v in self._values],
        }

    def _write(self, f: BinaryIO) -> None:
        """Write the memory as a safetensors file, streaming each key's values (no big concatenation)."""
        encoded = [t.encode("utf-8") for texts in self._texts for t in texts]
        text_ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        text_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        keys = np.ascontiguousarray(self._keys[: self.num_keys])
        chunks: list[tuple[str, np.dtype, list[int], list]] = [
            ("keys", np.dtype(np.float32), list(keys.shape), [keys]),
            ("values", np.dtype(np.float32), [self._num_entries, self.dim], self._values),
            ("text_bytes", np.dtype(np.uint8), [len(text_bytes)], [text_bytes]),
            ("text_ends", np.dtype(np.int64), [len(text_ends)], [text_ends]),
        ]
        state_json = json.dumps(self._state(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = hashlib.sha256(state_json.encode("utf-8"))
        header: dict = {}
        offset = 0
        for name, dtype, shape, parts in chunks:
            size = int(np.prod(shape)) * dtype.itemsize
            header[name] = {"dtype": _ST_DTYPES[dtype], "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
            for part in parts:
                digest.update(_raw(part))
        header["__metadata__"] = {
            "format_version": str(FORMAT_VERSION),
            "memoryr": state_json,
            "sha256": digest.hexdigest(),
        }
        header_bytes = json.dumps(header, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        header_bytes += b" " * (-len(header_bytes) % 8)
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for _, _, _, parts in chunks:
            for part in parts:
                f.write(_raw(part))

    def to_bytes(self) -> bytes:
        """The memory's file contents (what `save` writes)."""
        buffer = io.BytesIO()
        self._write(buffer)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        """Write the memory to one safetensors file atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                self._write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        dim: int | None = None,
        max_keys: int | None = None,
        max_per_key: int | None = None,
    ) -> EpisodicMemory:
        """Read a memory file, checking format, checksum and (when given) the expected dim, N and L."""
        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in ("keys", "values", "text_bytes", "text_ends")}
        except (SafetensorError, OSError, ValueError, KeyError) as e:
            raise MemoryFileError(f"memory file {path} is unreadable or not a memory file: {e}") from None
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise MemoryFileError(
                f"memory file {path} has format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        digest = hashlib.sha256(meta.get("memoryr", "").encode("utf-8"))
        for name in ("keys", "values", "text_bytes", "text_ends"):
            digest.update(_raw(tensors[name]))
        if digest.hexdigest() != meta.get("sha256"):
            raise MemoryFileError(f"memory file {path} fails its sha256 checksum (corrupt or edited)")
        state = json.loads(meta["memoryr"])
        for name, expected in (("dim", dim), ("max_keys", max_keys), ("max_per_key", max_per_key)):
            if expected is not None and state[name] != expected:
                raise MemoryFileError(f"memory file {path} has {name}={state[name]}, but {expected} was expected")
        memory = cls(state["dim"], state["max_keys"], state["max_per_key"], state["max_text_chars"])
        memory._restore(state, tensors, path)
        return memory

    def _restore(self, state: dict, tensors: dict[str, np.ndarray], path: Path) -> None:
        """Fill an empty memory from a checked file's state and tensors, keeping its row layout."""
        n, counts = len(state["key_texts"]), state["counts"]
        keys, values, text_ends = tensors["keys"], tensors["values"], tensors["text_ends"]
        if (
            keys.shape != (n, self.dim)
            or len(counts) != n
            or len(state["key_seqs"]) != n
            or values.shape != (sum(counts), self.dim)
            or len(text_ends) != sum(counts)
            or n > self.max_keys
            or any(c > self.max_per_key for c in counts)
        ):
            raise MemoryFileError(f"memory file {path} has tensors inconsistent with its metadata")
        self._keys = np.zeros((max(n, min(self.max_keys, 64)), self.dim), np.float32)
        self._keys[:n] = keys
        self._seqs = np.zeros(len(self._keys), np.int64)
        self._seqs[:n] = state["key_seqs"]
        self._key_texts = list(state["key_texts"])
        self._row_of = {t: r for r, t in enumerate(self._key_texts)}
        self._next_seq = state["next_seq"]
        text_data = tensors["text_bytes"].tobytes()
        starts = np.concatenate([[0], text_ends[:-1]]) if len(text_ends) else text_ends
        all_texts = [text_data[s:e].decode("utf-8") for s, e in zip(starts.tolist(), text_ends.tolist())]
        bounds = np.cumsum([0] + counts).tolist()
        self._values = [np.ascontiguousarray(values[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        self._texts = [all_texts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._num_entries = int(bounds[-1])
