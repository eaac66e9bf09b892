"""Continuous batching on the fast decoder: many prompts of any length, each row refilled as its take ends.

`BatchScheduler.run` takes decode jobs (a key, a prompt, a seed, a token budget) from an iterable,
puts each in a free row of one FastDecoder (engine.lm.decoder: ragged rows at their own positions
over the static cache), steps all rows together and yields each job's codes the moment it ends; the
freed row takes the next job at the next chunk boundary, so the batch stays full until the jobs run out.

A take does not depend on its batch: every row is prefilled alone, samples with noise from its own
generator seeded with its job's seed, and is refilled only at chunk boundaries, so a row's k-th token
always uses the same noise. Greedy rows equal engine.lm.reference.generate_codes token for token
(up to the device's floating-point sums, which may differ between batch shapes; see bench/RESULTS.md).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from engine.config import SamplingParams
from engine.errors import CancelledError, SettingsError
from engine.lm.loading import make_generator


@dataclass(frozen=True)
class DecodeJob:
    """One take to decode."""

    key: Hashable  # the caller's name for it (e.g. a segment's take key)
    prompt: tuple[int, ...]  # token ids (engine.lm.prompt.build_prompt)
    seed: int | None  # the take's seed: its sampling noise comes from a generator seeded with it
    max_new_tokens: int  # speech tokens at most


@dataclass(frozen=True)
class DecodedJob:
    """A finished job: its codes and why it stopped ("end": stop token, "length": budget used up)."""

    key: Hashable
    codes: tuple[int, ...]  # speech codes, 0..65535
    finish_reason: str


@dataclass
class _Row:
    job: DecodeJob
    generator: object
    codes: list[int] = field(default_factory=list)
    reason: str | None = None

    def feed(self, draws: Iterable[int], num_codes: int) -> bool:
        """Take this row's draws in order until its take ends; True when it has ended."""
        for idx in draws:
            if idx >= num_codes:
                self.reason = "end"
                return True
            self.codes.append(idx)
            if len(self.codes) >= self.job.max_new_tokens:
                self.reason = "length"
                return True
        return False


class BatchScheduler:
    """Runs decode jobs on `decoder`'s max_batch rows with one sampling setting (seeds are per job)."""

    def __init__(self, decoder, params: SamplingParams) -> None:
        self.decoder, self.params = decoder, params

    def run(
        self,
        jobs: Iterable[DecodeJob],
        *,
        cancel: threading.Event | None = None,
        on_tokens: Callable[[Hashable, int], None] | None = None,
    ) -> Iterator[DecodedJob]:
        """Yield each job's result as it finishes (not in job order). Jobs are pulled from `jobs` only
        when a row is free, so a lazy iterable (a queue of segments) works. CancelledError when
        `cancel` is set (checked at every chunk boundary, within check_every steps, and before every result); on_tokens(key,
        codes so far) after every chunk. SettingsError for a prompt + budget over the decoder's length.
        """
        d, params = self.decoder, self.params
        num_codes = d.lm.tokens.num_codes
        runner = d.runner(params)  # before any row holds a prompt: a capture warms up on the cache
        rows: list[_Row | None] = [None] * d.max_batch
        pending = iter(jobs)
        exhausted = False
        while True:
            _check(cancel)
            for r in range(d.max_batch):
                while rows[r] is None and not exhausted:
                    job = next(pending, None)
                    if job is None:
                        exhausted = True
                        break
                    if job.max_new_tokens < 1 or len(job.prompt) + job.max_new_tokens > d.max_length:
                        raise SettingsError(
                            f"Prompt ({len(job.prompt)}) + max_new_tokens ({job.max_new_tokens}) must fit the "
                            f"decoder's {d.max_length} tokens (and at least one token)."
                        )
                    row = _Row(job, None if params.greedy else make_generator(d.lm.device, job.seed))
                    if row.feed([d.start_row(r, job.prompt, params, row.generator)], num_codes):
                        _check(cancel)
                        yield DecodedJob(job.key, tuple(row.codes), row.reason)
                    else:
                        rows[r] = row
            active = {r: row for r, row in enumerate(rows) if row is not None}
            if not active:
                return
            draws = d.step_rows(runner, params, {r: row.generator for r, row in active.items()})
            for r, row in active.items():
                if row.feed(draws[r], num_codes):
                    rows[r] = None
                    _check(cancel)
                    yield DecodedJob(row.job.key, tuple(row.codes), row.reason)
                elif on_tokens is not None:
                    on_tokens(row.job.key, len(row.codes))


def _check(cancel: threading.Event | None) -> None:
    """No result follows a cancel."""
    if cancel is not None and cancel.is_set():
        raise CancelledError("Generation was cancelled.")


def default_batch(lm, *, context: int = 2048, cap: int = 8) -> int:
    """Rows to decode at once on `lm`'s device: as many full-window KV caches as fit in half the free
    memory (CUDA: torch.cuda.mem_get_info after the weights are loaded; CPU/MPS: a quarter of the
    available RAM), at least 1 and at most `cap` (beyond 8 a step costs ~linearly more on the devices
    measured, so more rows buy little). One row's cache: layers * 2 * kv_heads * context * head_dim values."""
    import os

    import torch

    per_row = lm.kv_row_bytes(context)
    if lm.device.type == "cuda":
        free = torch.cuda.mem_get_info(lm.device)[0] // 2
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
        except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume 8 GB free
            free = 2 * 2**30
    return max(1, min(cap, free // max(per_row, 1)))
