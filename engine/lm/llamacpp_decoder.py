"""Speech decoding on llama.cpp: ``LlamaCppDecoder``, made by engine.lm.llamacpp.LlamaCppLM.decoder.

It keeps engine.lm.decoder.FastDecoder's protocols (``generate``/``codes`` and the row protocol of
engine.lm.batching.BatchScheduler), so the render path, narration and quality mode drive either
backend alike. llama.cpp only computes logits; sampling over the speech and stop tokens is ours.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from engine.config import SamplingParams
from engine.errors import DeviceError
from engine.lm.decoder import FastDecoder, check_prompts, check_row
from engine.lm.llamacpp import _LOG, EXACT_PRECISIONS, LlamaCppLM, _llama
from engine.lm.loading import make_generator
from engine.lm.sampling import apply_top_k, apply_top_p

PREFILL_CHUNK = 256  # prompt tokens per llama_decode call while prefilling; cancel is checked between chunks


class LlamaCppDecoder:
    """Speech decoding on llama.cpp with engine.lm.decoder.FastDecoder's protocols: ``generate`` (N
    prompts, one sampling generator) and the row protocol of engine.lm.batching.BatchScheduler
    (``start_row``/``step_rows``: each row refilled as its take ends, sampled with its own generator).

    Rows are decoded truly batched (one llama_decode per step for all live rows, one KV sequence
    per row). The KV of every row is kept, so a prompt that starts like one a row holds (same voice)
    copies those cells and prefills only the rest. Holds one llama_context: one caller at a time.
    """

    check_every = 1  # BatchScheduler's chunk of steps: llama.cpp hands logits to the host every token anyway

    def __init__(self, lm: LlamaCppLM, *, max_batch: int = 1, max_length: int = 2048) -> None:
        llama_cpp = _llama()
        self.lm, self.max_batch, self.max_length = lm, max_batch, max_length
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = max_batch * max_length
        params.n_batch = params.n_ubatch = max(PREFILL_CHUNK, max_batch)
        params.n_seq_max = max_batch
        params.n_threads = params.n_threads_batch = lm.threads
        params.kv_unified = True  # shared prompt prefixes are shared cells, not copies
        exact = lm.quantization in EXACT_PRECISIONS
        params.type_k = params.type_v = 0 if exact else 1  # KV cache in F32 for the exact precisions, else F16
        self._ctx = llama_cpp.llama_init_from_model(lm.model.ptr, params)
        if not self._ctx:
            raise DeviceError(f"llama.cpp could not make a context of {params.n_ctx} tokens: {_LOG[-1] if _LOG else 'out of memory?'}")
        self._llama, self._free = llama_cpp, llama_cpp.llama_free
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        self._batch_free = llama_cpp.llama_batch_free
        t = lm.tokens
        self._token_ids = list(range(t.first_speech_id, t.vocab_end)) + list(t.stop_ids)  # reduced index -> id
        self._stop_index = {tid: t.num_codes + j for j, tid in enumerate(t.stop_ids)}
        self._held: list[list[int]] = [[] for _ in range(max_batch)]  # the tokens whose KV each sequence holds
        self._row_seen: list[torch.Tensor | None] = [None] * max_batch  # row protocol: tokens each row has seen
        self._row_token = [0] * max_batch  # row protocol: each row's last draw (reduced index), fed next step
        self._row_pos = [0] * max_batch  # row protocol: the position that draw will take

    def __del__(self) -> None:
        if getattr(self, "_ctx", None):
            self._batch_free(self._batch)
            self._free(self._ctx)
            self._ctx = None

    # ---- llama.cpp calls -----------------------------------------------------------------------
    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token id, position, sequence, wants logits) entries."""
        b = self._batch
        for i, (tid, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tid, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(entries)
        rc = self._llama.llama_decode(self._ctx, b)
        if rc != 0:
            raise DeviceError(f"llama.cpp failed to decode (code {rc}): {_LOG[-1] if _LOG else 'no free KV cells'}")

    def _reduced_logits(self, batch_index: int) -> torch.Tensor:
        """float32 logits [num_codes + stops] of the batch entry ``batch_index`` (speech block, then stop ids)."""
        ptr = self._llama.llama_get_logits_ith(self._ctx, batch_index)
        full = np.ctypeslib.as_array(ptr, shape=(self.lm.model.n_vocab,))
        t = self.lm.tokens
        return torch.from_numpy(np.concatenate([full[t.first_speech_id : t.vocab_end], full[list(t.stop_ids)]]))

    def _prefill(self, ids: list[int], seq: int, start: int, cancel: threading.Event | None) -> torch.Tensor | None:
        """Feed ids[start:] to sequence ``seq``; logits after the last one (None if cancelled)."""
        lo = start
        for lo in range(start, len(ids), PREFILL_CHUNK):
            if cancel is not None and cancel.is_set():
                return None
            hi = min(lo + PREFILL_CHUNK, len(ids))
            self._decode([(ids[p], p, seq, p == len(ids) - 1) for p in range(lo, hi)])
        return self._reduced_logits(len(ids) - 1 - lo)  # the last token's index in the last chunk

    def _fill(self, seq: int, prompt: list[int], cancel: threading.Event | None) -> torch.Tensor | None:
        """Make sequence ``seq`` hold ``prompt``: keep or copy the longest prefix some sequence already
        holds, prefill the rest; logits after its last token (None if cancelled)."""
        llama_cpp, mem = self._llama, self._mem
        source, keep = seq, _common_prefix(self._held[seq], prompt)
        for other, held in enumerate(self._held):
            if other != seq and (n := _common_prefix(held, prompt)) > keep:
                source, keep = other, n
        keep = min(keep, len(prompt) - 1)  # the last token is always fed: its logits are the first draw's
        if source == seq:
            llama_cpp.llama_memory_seq_rm(mem, seq, keep, -1)
        else:
            llama_cpp.llama_memory_seq_rm(mem, seq, -1, -1)
            if keep:
                llama_cpp.llama_memory_seq_cp(mem, source, seq, 0, keep)
        self._held[seq] = prompt[:keep]
        logits = self._prefill(prompt, seq, keep, cancel)
        if logits is not None:
            self._held[seq] = list(prompt)
        return logits

    def _start(self, prompts: list[list[int]], cancel: threading.Event | None) -> torch.Tensor | None:
        """Prefill every row (reusing held prefixes); logits [N, V'] after each prompt."""
        for seq in range(len(prompts), self.max_batch):  # unused rows give their cells back
            self._llama.llama_memory_seq_rm(self._mem, seq, -1, -1)
            self._held[seq] = []
        rows: list[torch.Tensor] = []
        for i, prompt in enumerate(prompts):
            if i > 0 and prompt == prompts[0]:  # same prompt: share row 0's cells and logits
                self._llama.llama_memory_seq_rm(self._mem, i, -1, -1)
                self._llama.llama_memory_seq_cp(self._mem, 0, i, -1, -1)
                self._held[i] = list(prompt)
                rows.append(rows[0])
                continue
            logits = self._fill(i, prompt, cancel)
            if logits is None:
                return None
            rows.append(logits)
        return torch.stack(rows)

    def _seen_of(self, prompt: Sequence[int]) -> torch.Tensor:
        """bool [V']: the speech and stop tokens in ``prompt`` (what the repetition penalty starts from)."""
        t = self.lm.tokens
        seen = torch.zeros(len(self._token_ids), dtype=torch.bool)
        hits = [tid - t.first_speech_id if t.is_speech(tid) else self._stop_index[tid]
                for tid in set(prompt) if t.is_speech(tid) or tid in self._stop_index]
        seen[hits] = True
        return seen

    # ---- sampling (as engine.lm.decoder.FastDecoder._sample, on the host) ------------------------
    @staticmethod
    def _sample(logits: torch.Tensor, seen: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
        """logits [B, V'] float32 -> reduced token index [B]: penalty -> greedy | temperature, top-k, top-p, draw."""
        if params.repetition_penalty != 1.0:
            p = params.repetition_penalty
            logits = torch.where(seen, torch.where(logits < 0, logits * p, logits / p), logits)
        if params.greedy:
            return logits.argmax(-1)
        logits = apply_top_p(apply_top_k(logits / params.temperature, params.top_k), params.top_p)
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)

    # ---- public API ----------------------------------------------------------------------------
    def prefill_prefix(self, ids: Sequence[int]) -> None:
        """Keep the KV of a shared prompt prefix (e.g. up to the voice reference's codes) in sequence 0."""
        ids = list(ids)
        self._llama.llama_memory_seq_rm(self._mem, 0, -1, -1)
        self._held[0] = []
        if ids:
            self._prefill(ids, 0, 0, None)
            self._held[0] = ids

    def logits(self, ids: Sequence[int]) -> torch.Tensor:
        """Teacher-forced logits [len(ids), num_codes + stops] (float32) after each token of ``ids``.

        For quality checks against the torch model (greedy agreement, KL); replaces the cached KV.
        """
        ids = list(ids)
        self._llama.llama_memory_clear(self._mem, True)
        self._held, rows = [[] for _ in range(self.max_batch)], []
        for lo in range(0, len(ids), PREFILL_CHUNK):
            hi = min(lo + PREFILL_CHUNK, len(ids))
            self._decode([(ids[p], p, 0, True) for p in range(lo, hi)])
            rows += [self._reduced_logits(j) for j in range(hi - lo)]
        self._held[0] = ids
        return torch.stack(rows)

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        params: SamplingParams,
        *,
        max_new_tokens: int,
        cancel: threading.Event | None = None,
    ) -> Generator[list[int | None], None, list[str]]:
        """Generate speech after N prompts (N <= max_batch), batched; same protocol as FastDecoder.generate.

        Yields per step a list of N entries: the new speech code (0..65535) of each row, or None once
        that row has ended. Returns one finish reason per row: "end", "length" or "cancelled"
        (``cancel`` is checked before every llama.cpp call and every yield: it stops within one token).
        """
        prompts = [list(p) for p in prompt_ids]
        check_prompts(prompts, self.max_batch, self.max_length, max_new_tokens, one_length=False)
        n = len(prompts)
        if cancel is not None and cancel.is_set():
            return ["cancelled"] * n
        if max_new_tokens <= 0:
            return ["length"] * n
        t = self.lm.tokens
        seen = torch.stack([self._seen_of(p) for p in prompts])
        generator = make_generator(torch.device("cpu"), params.seed)
        logits = self._start(prompts, cancel)
        if logits is None:
            return ["cancelled"] * n
        reasons: list[str | None] = [None] * n
        positions = [len(p) for p in prompts]
        live = list(range(n))  # rows still generating, in batch order
        done = 0
        while True:
            drawn = self._sample(logits, seen[live], params, generator).tolist()
            done += 1
            codes: list[int | None] = [None] * n
            for row, idx in zip(live, drawn):
                seen[row, idx] = True
                if idx >= t.num_codes:
                    reasons[row] = "end"
                else:
                    codes[row] = idx
            if cancel is not None and cancel.is_set():  # no code follows a cancel
                return [r or "cancelled" for r in reasons]
            if any(c is not None for c in codes):
                yield codes
            feed = [(row, codes[row]) for row in live if reasons[row] is None]
            if not feed:
                return [r or "end" for r in reasons]
            if done >= max_new_tokens or (cancel is not None and cancel.is_set()):
                final = "length" if done >= max_new_tokens else "cancelled"
                return [r or final for r in reasons]
            entries = [(t.first_speech_id + code, positions[row], row, True) for row, code in feed]
            self._decode(entries)
            for row, code in feed:
                positions[row] += 1
                self._held[row].append(t.first_speech_id + code)
            live = [row for row, _ in feed]
            logits = torch.stack([self._reduced_logits(i) for i in range(len(live))])

    # ---- row protocol (engine.lm.batching.BatchScheduler) ------------------------------------------
    def runner(self, params: SamplingParams) -> Callable[[], None]:
        """FastDecoder's step runner; llama.cpp has nothing to capture, so it does nothing."""
        return lambda: None

    def start_row(self, row: int, prompt: Sequence[int], params: SamplingParams,
                  generator: torch.Generator | None) -> int:
        """Put ``prompt`` in row ``row`` and draw its first token (reduced index; >= num_codes: a stop).

        Other rows are untouched. The row samples with ``generator`` (None when greedy) alone, so its
        take does not depend on what the other rows hold.
        """
        prompt = list(prompt)
        check_row(row, prompt, self.max_batch, self.max_length)
        logits = self._fill(row, prompt, None)
        self._row_seen[row] = self._seen_of(prompt)
        self._row_pos[row] = len(prompt)
        return self._draw(row, logits, params, generator)

    def step_rows(self, runner: Callable[[], None], params: SamplingParams,
                  generators: dict[int, torch.Generator | None]) -> list[list[int]]:
        """One step of the rows in ``generators`` (one batched llama_decode); draws [max_batch][1].
        A row whose last draw was a stop, or whose window is full, is not fed: its draw is a stop."""
        t = self.lm.tokens
        draws = [[t.num_codes] for _ in range(self.max_batch)]  # idle rows' draws mean nothing
        live = [r for r in generators if self._row_token[r] < t.num_codes and self._row_pos[r] < self.max_length]
        if not live:
            return draws
        self._decode([(t.first_speech_id + self._row_token[r], self._row_pos[r], r, True) for r in live])
        for i, r in enumerate(live):
            self._held[r].append(t.first_speech_id + self._row_token[r])
            self._row_pos[r] += 1
            draws[r][0] = self._draw(r, self._reduced_logits(i), params, generators[r])
        return draws

    def _draw(self, row: int, logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
        """Sample row ``row``'s next token from its logits [V'] and remember it."""
        seen = self._row_seen[row]
        idx = int(self._sample(logits[None], seen[None], params, generator)[0])
        seen[idx] = True
        self._row_token[row] = idx
        return idx

    codes = FastDecoder.codes  # one prompt: yields codes, returns the finish reason (the same wrapper of generate)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
