"""The training console: one progress bar with the few numbers worth watching, not 40 metrics a step.

Every metric still goes to metrics.jsonl (and TensorBoard); `--disable_tqdm true` prints each step's
whole dict instead, as transformers does.
"""

from __future__ import annotations

import logging
import warnings

from transformers.trainer_callback import ProgressCallback
from transformers.utils import logging as transformers_logging

# metrics.jsonl key -> label on the bar, in the order shown
KEY_NUMBERS = {
    "reward": "reward",
    "rewards/correctness/mean": "correct",
    "completions/mean_length": "len",
    "entropy": "entropy",
}

# Deprecations that TRL and transformers raise on every run from calls memoryr does not control or
# must keep for older transformers 5.x (`past_key_values`, renamed `cache` in later 5.x releases).
# transformers also renamed `gradient_checkpointing` (now `activation_checkpointing`), a key every recipe sets.
LIBRARY_DEPRECATIONS = (r"`past_key_values` is deprecated", r"`is_gradient_checkpointing` is deprecated",
                        r"`gradient_checkpointing` is deprecated")


class _DropCacheRename(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "`past_key_values`/`cache_params` are deprecated" not in record.getMessage()


_DROP_CACHE_RENAME = _DropCacheRename()  # one instance, so a second call adds nothing (Logger.addFilter skips it)


def silence_library_deprecations() -> None:
    """Hide the library deprecation notices the training loop triggers on every run (not memoryr's own)."""
    for message in LIBRARY_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    logging.getLogger("transformers.utils.generic").addFilter(_DROP_CACHE_RENAME)


def hide_library_bars() -> None:
    """No transformers bars for loading or writing weights (each checkpoint would print two under the training bar)."""
    transformers_logging.disable_progress_bar()


def key_numbers(logs: dict) -> dict[str, str]:
    """The bar's postfix from one step's logs: reward, correctness, length, entropy, memory sizes."""
    shown = {label: f"{logs[key]:.3g}" for key, label in KEY_NUMBERS.items() if isinstance(logs.get(key), (int, float))}
    if "memory/success_entries" in logs:
        shown["memory"] = f"{int(logs['memory/success_entries'])} ok/{int(logs['memory/failure_entries'])} failed"
    return shown


class KeyNumbersBar(ProgressCallback):
    """transformers' training bar, with the step's key numbers as its postfix instead of a printed dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = key_numbers(logs)
            if shown:
                self.training_bar.set_postfix(shown, refresh=True)
