"""A fast decode loop for the Llasa LM in the spirit of gpt-fast: static KV cache, fixed-shape step.

``FastDecoder`` runs the Hugging Face model's own modules (norms, projections, MLP, rotary tables;
bitsandbytes NF4 layers included) over its own static KV buffers, so one decode step has fixed
shapes and no host sync: the position, the step index, the sampled tokens and the tokens seen
(repetition penalty) live in device tensors. Logits are computed only over the speech rows of the
lm_head (a view, no copy) plus the stop rows. On CUDA the step is captured once per sampling
setting in a CUDA graph (optionally compiled first) and replayed; on the CPU the same step runs
eagerly. The host reads the sampled tokens once every ``check_every`` steps.

Sampling follows engine.lm.sampling (repetition penalty -> temperature -> top-k -> top-p) but draws
with the exponential-race (Gumbel-max) trick on noise filled outside the step: greedy decoding
gives exactly the tokens of engine.lm.loading.generate_codes; a seeded sampled take is reproducible but
is not the same take as generate_codes with that seed.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence

import torch
import torch.nn.functional as F

from engine.config import SamplingParams
from engine.errors import SettingsError
from engine.lm.cpu_linear import rows_linear, rows_weight
from engine.lm.loading import LlasaLM, make_generator
from engine.lm.sampling import apply_top_k, apply_top_p


class FastDecoder:
    """Static-cache decoder for up to ``max_batch`` sequences of up to ``max_length`` tokens in all.

    ``cuda_graph`` (default: on CUDA) captures the step once per sampling setting; ``compile``
    (default off: it costs a minute of compilation) runs torch.compile on the step before capture.
    Holds the KV cache of one generation: run one ``generate`` at a time per decoder.
    """

    def __init__(
        self,
        lm: LlasaLM,
        *,
        max_batch: int = 1,
        max_length: int = 2048,
        compile: bool | None = None,
        cuda_graph: bool | None = None,
        check_every: int = 8,
    ) -> None:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self.lm, self._rope = lm, apply_rotary_pos_emb
        on_cuda = lm.device.type == "cuda"
        self.cuda_graph = on_cuda if cuda_graph is None else cuda_graph and on_cuda
        self.compile = bool(compile) and on_cuda
        self.max_batch, self.max_length, self.check_every = max_batch, max_length, check_every
        inner, dev = lm.model.model, lm.device
        self.dtype = inner.embed_tokens.weight.dtype  # compute dtype (bf16 for NF4 weights)
        attn = inner.layers[0].self_attn
        kv_heads = lm.model.config.num_key_value_heads
        shape = (max_batch, kv_heads, max_length, attn.head_dim)
        self._kv = [(torch.zeros(shape, dtype=self.dtype, device=dev), torch.zeros(shape, dtype=self.dtype, device=dev))
                    for _ in inner.layers]
        positions = torch.arange(max_length, device=dev)
        cos, sin = inner.rotary_emb(torch.zeros(1, dtype=self.dtype, device=dev), positions[None])
        self._cos, self._sin, self._positions = cos[0], sin[0], positions  # [L, head_dim]
        # Head rows: speech block (a view of the lm_head weight) + stop rows; full head if quantized.
        t, weight = lm.tokens, lm.model.lm_head.weight.detach()  # detach: a view, no copy
        self._stop_ids = torch.tensor(t.stop_ids, device=dev)
        self._full_head = not (weight.dtype.is_floating_point and weight.dim() == 2 and weight.shape[0] >= t.vocab_end)
        if not self._full_head:
            self._speech_w = weight[t.first_speech_id : t.vocab_end]  # view: no copy of 65,536 rows
            self._stop_w = weight[self._stop_ids]  # 1-2 rows, copied
        self.vocab = t.num_codes + len(t.stop_ids)  # reduced vocabulary: codes, then stop tokens
        self._token_ids = torch.cat([torch.arange(t.first_speech_id, t.vocab_end, device=dev), self._stop_ids])
        # Step state: all device tensors, written in place so a captured step sees them.
        self._token = torch.zeros(max_batch, dtype=torch.long, device=dev)  # reduced index of last token
        self._pos = torch.zeros(max_batch, dtype=torch.long, device=dev)  # per row: position of _token
        self._slot = torch.zeros(1, dtype=torch.long, device=dev)  # step index within the current chunk
        self._out = torch.zeros(max_batch, check_every, dtype=torch.long, device=dev)  # this chunk's draws
        self._seen = torch.zeros(max_batch, self.vocab, dtype=torch.bool, device=dev)  # for the penalty
        self._noise = torch.ones(check_every, max_batch, self.vocab, device=dev)  # Exp(1) draws
        self._runners: dict[tuple, Callable[[], None]] = {}  # one step runner per sampling setting
        self._prefix: tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    # ---- model forward over the static cache ----------------------------------------------------
    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, row: int = 0) -> torch.Tensor:
        """ids [B, T] int64 at positions ``pos`` [T] -> last hidden state [B, hidden] (writes the KV).

        Writes cache rows ``row .. row + B - 1`` (a prefill of one row of a ragged batch uses B = 1).
        """
        inner = self.lm.model.model
        x = inner.embed_tokens(ids)
        b, n = ids.shape
        cos, sin = self._cos[pos][None], self._sin[pos][None]
        used = self._used(pos)
        mask = self._positions[None, :used] <= pos[:, None]  # [T, L]: causal over the static cache
        for layer, (k_cache, v_cache) in zip(inner.layers, self._kv):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = rows_linear(h, a.q_proj).view(b, n, -1, a.head_dim).transpose(1, 2)
            k = rows_linear(h, a.k_proj).view(b, n, -1, a.head_dim).transpose(1, 2)
            v = rows_linear(h, a.v_proj).view(b, n, -1, a.head_dim).transpose(1, 2)
            q, k = self._rope(q, k, cos, sin)
            kc, vc = k_cache[row : row + b], v_cache[row : row + b]
            kc.index_copy_(2, pos, k)
            vc.index_copy_(2, pos, v)
            o = F.scaled_dot_product_attention(q, kc[:, :, :used], vc[:, :, :used], attn_mask=mask, scale=a.scaling,
                                               enable_gqa=True)
            x = x + rows_linear(o.transpose(1, 2).reshape(b, n, -1), a.o_proj)
            x = x + _mlp(layer.mlp, layer.post_attention_layernorm(x))
        return inner.norm(x[:, -1])

    def _used(self, pos: torch.Tensor) -> int:
        """Cache slots attention reads: the whole static cache for a captured/compiled step (fixed shapes);
        on the eager path (CPU, MPS) only up to the furthest position, so a full-window cache costs
        nothing while the sequence is short."""
        return self.max_length if self.cuda_graph or self.compile else int(pos.max()) + 1

    def _forward_rows(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One token per row at per-row positions: ids [B, 1], pos [B] -> hidden [B, hidden] (writes the KV).

        Each row attends to its own cache up to its own position (a [B, 1, 1, L] mask), so rows of
        different prompt lengths, texts and voices decode side by side at their true positions; a
        position past the cache (a row already over its budget) is clamped to the last slot.
        """
        inner = self.lm.model.model
        x = inner.embed_tokens(ids)
        b = ids.shape[0]
        pos = pos.clamp(max=self.max_length - 1)
        cos, sin = self._cos[pos][:, None], self._sin[pos][:, None]  # [B, 1, D]
        used = self._used(pos)
        mask = (self._positions[None, :used] <= pos[:, None])[:, None, None, :]  # [B, 1, 1, L]
        for layer, (k_cache, v_cache) in zip(inner.layers, self._kv):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = rows_linear(h, a.q_proj).view(b, 1, -1, a.head_dim).transpose(1, 2)
            k = rows_linear(h, a.k_proj).view(b, 1, -1, a.head_dim).transpose(1, 2)
            v = rows_linear(h, a.v_proj).view(b, 1, -1, a.head_dim).transpose(1, 2)
            q, k = self._rope(q, k, cos, sin)
            index = pos.view(b, 1, 1, 1).expand(b, k.shape[1], 1, a.head_dim)
            k_cache[:b].scatter_(2, index, k)
            v_cache[:b].scatter_(2, index, v)
            o = F.scaled_dot_product_attention(
                q, k_cache[:b, :, :used], v_cache[:b, :, :used], attn_mask=mask, scale=a.scaling, enable_gqa=True
            )
            x = x + rows_linear(o.transpose(1, 2).reshape(b, 1, -1), a.o_proj)
            x = x + _mlp(layer.mlp, layer.post_attention_layernorm(x))
        return inner.norm(x[:, -1])

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, hidden] -> float32 logits [B, num_codes + stops] over the reduced vocabulary."""
        if self._full_head:
            full = rows_linear(hidden, self.lm.model.lm_head)
            t = self.lm.tokens
            return torch.cat([full[:, t.first_speech_id : t.vocab_end], full[:, self._stop_ids]], 1).float()
        return torch.cat([rows_weight(hidden, self._speech_w), F.linear(hidden, self._stop_w)], 1).float()

    def _sample(self, logits: torch.Tensor, params: SamplingParams, row: int = 0) -> torch.Tensor:
        """logits [B, V] of rows ``row .. row + B - 1`` -> reduced token index [B]; no host sync."""
        rows = slice(row, row + logits.shape[0])
        if params.repetition_penalty != 1.0:
            p = params.repetition_penalty
            logits = torch.where(self._seen[rows], torch.where(logits < 0, logits * p, logits / p), logits)
        if params.greedy:
            return logits.argmax(-1)
        logits = apply_top_p(apply_top_k(logits / params.temperature, params.top_k), params.top_p)
        noise = self._noise.index_select(0, self._slot)[0, rows]
        return (logits.softmax(-1) / noise).argmax(-1)  # == a multinomial draw (exponential race)

    def _refill_noise(self, generator: torch.Generator) -> None:
        """Fresh Exp(1) draws for the next check_every steps (never 0: 0/0 would win the argmax)."""
        self._noise.exponential_(generator=generator).clamp_(min=torch.finfo(self._noise.dtype).tiny)

    def _step(self, params: SamplingParams) -> None:
        """One fixed-shape decode step over all max_batch rows: feed _token, draw the next one."""
        hidden = self._forward_rows(self._token_ids[self._token][:, None], self._pos)
        nxt = self._sample(self._logits(hidden), params)
        self._out.index_copy_(1, self._slot, nxt[:, None])
        self._seen.scatter_(1, nxt[:, None], True)
        self._token.copy_(nxt)
        self._pos.add_(1)
        self._slot.add_(1)

    def _runner(self, params: SamplingParams):
        """A callable running one step for ``params``: a replayed CUDA graph, or the (compiled) step."""
        key = (params.greedy, params.temperature, params.top_k, params.top_p, params.repetition_penalty)
        if key in self._runners:
            return self._runners[key]
        step = lambda: self._step(params)  # noqa: E731
        if self.compile:
            step = torch.compile(step, mode="max-autotune-no-cudagraphs", dynamic=False)
        if self.cuda_graph:  # warm up on a side stream (generate resets the state after), then capture
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._pos.zero_(), self._slot.zero_()
                    step()
            torch.cuda.current_stream().wait_stream(stream)
            self._pos.zero_(), self._slot.zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
            self._runners[key] = graph.replay
        else:
            self._runners[key] = step
        return self._runners[key]

    def _prompt_seen(self, row: Sequence[int]) -> torch.Tensor:
        """Tokens of a prompt the repetition penalty counts (its speech codes and stop tokens): bool [V]."""
        t = self.lm.tokens
        reduced = {tid: j + t.num_codes for j, tid in enumerate(t.stop_ids)}
        seen = torch.zeros(self.vocab, dtype=torch.bool)
        hits = [tid - t.first_speech_id if t.is_speech(tid) else reduced[tid] for tid in set(row)
                if t.is_speech(tid) or tid in reduced]
        seen[hits] = True
        return seen

    # ---- ragged rows (continuous batching, engine.lm.batching) ---------------------------------
    def runner(self, params: SamplingParams) -> Callable[[], None]:
        """The step runner for ``params``; get it before any row holds a prompt (capture warms up on the cache)."""
        return self._runner(params)

    @torch.inference_mode()
    def start_row(self, row: int, prompt: Sequence[int], params: SamplingParams,
                  generator: torch.Generator | None) -> int:
        """Put ``prompt`` in cache row ``row`` (prefilled alone, at positions 0..n-1) and draw its first token.

        Other rows are untouched, so a finished row is refilled while the rest continue. Returns the
        reduced index of the first token (>= num_codes: a stop token). For a sampled row, ``generator``
        fills this row's noise for the first token (see step_rows: the same schedule as ``generate``).
        """
        prompt = list(prompt)
        check_row(row, prompt, self.max_batch, self.max_length)
        hidden = self._forward(torch.tensor([prompt], device=self.lm.device), self._positions[: len(prompt)], row=row)
        self._seen[row].copy_(self._prompt_seen(prompt))
        self._slot.zero_()
        if not params.greedy:
            self._fill_row_noise(row, generator)
        first = self._sample(self._logits(hidden), params, row=row)
        self._seen[row, first] = True
        self._token[row] = first[0]
        self._pos[row] = len(prompt)
        return int(first[0])

    def _fill_row_noise(self, row: int, generator: torch.Generator | None) -> None:
        """Fresh Exp(1) draws of one row from its own generator: a take's noise never depends on its batch."""
        fresh = torch.empty(self.check_every, self.vocab, device=self.lm.device).exponential_(generator=generator)
        self._noise[:, row].copy_(fresh.clamp_(min=torch.finfo(fresh.dtype).tiny))

    @torch.inference_mode()
    def step_rows(self, runner: Callable[[], None], params: SamplingParams,
                  generators: dict[int, torch.Generator | None]) -> list[list[int]]:
        """check_every steps of every row; returns the draws [max_batch][check_every] (one host sync).

        Sampled rows listed in ``generators`` get fresh noise from their own generator first; rows
        not listed are idle and their draws are meaningless.
        """
        self._slot.zero_()
        if not params.greedy:
            for row, generator in generators.items():
                self._fill_row_noise(row, generator)
        for _ in range(self.check_every):
            runner()
        return self._out.tolist()

    # ---- public API ----------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill_prefix(self, ids: Sequence[int]) -> None:
        """Keep the KV of a shared prompt prefix (e.g. up to the voice reference's codes).

        Later prompts that start with ``ids`` prefill only what follows it. Costs
        layers * 2 * kv_heads * len(ids) * head_dim values of device memory.
        """
        ids = list(ids)
        pos = self._positions[: len(ids)]
        self._forward(torch.tensor([ids], device=self.lm.device), pos)
        self._prefix = (ids, [(k[:1, :, : len(ids)].clone(), v[:1, :, : len(ids)].clone()) for k, v in self._kv])

    @torch.inference_mode()
    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        params: SamplingParams,
        *,
        max_new_tokens: int,
        cancel: threading.Event | None = None,
    ) -> Generator[list[int | None], None, list[str]]:
        """Generate speech after N prompts of one length (N <= max_batch), all in one batch.

        Yields, per step, a list of N entries: the new speech code (int 0..65535) of each sequence,
        or None once that sequence has ended; steps in which every sequence has ended are not
        yielded. Returns one finish reason per sequence: "end" (stop token, not yielded), "length"
        (``max_new_tokens`` codes) or "cancelled" (``cancel`` is checked before every yield; the device
        stops within ``check_every`` steps).
        With greedy params each sequence's codes equal engine.lm.loading.generate_codes' for its prompt.
        """
        prompts = [list(p) for p in prompt_ids]
        check_prompts(prompts, self.max_batch, self.max_length, max_new_tokens, one_length=True)
        n, length = len(prompts), len(prompts[0])
        reasons: list[str | None] = [None] * n
        if cancel is not None and cancel.is_set():
            return ["cancelled"] * n
        if max_new_tokens <= 0:
            return ["length"] * n
        step = self._runner(params)  # before the state reset: capture runs warm-up steps
        dev, t = self.lm.device, self.lm.tokens
        rows = prompts + [prompts[0]] * (self.max_batch - n)  # padding rows, ignored
        ids = torch.tensor(rows, device=dev)
        start = 0
        if self._prefix and all(p[: len(self._prefix[0])] == self._prefix[0] for p in prompts):
            start = min(len(self._prefix[0]), length - 1)  # prefill at least the last prompt token
            for (k, v), (pk, pv) in zip(self._kv, self._prefix[1]):
                k[:, :, :start].copy_(pk[:, :, :start])
                v[:, :, :start].copy_(pv[:, :, :start])
        hidden = self._forward(ids[:, start:], self._positions[start:length])
        # Seen tokens (for the penalty) in reduced indices: the prompt's speech codes and stop tokens.
        self._seen.copy_(torch.stack([self._prompt_seen(row) for row in rows]))
        generator = make_generator(dev, params.seed)
        # The prefill's logits give the first token; every later one comes from a (replayed) step.
        self._slot.zero_()
        if not params.greedy:
            self._refill_noise(generator)
        first = self._sample(self._logits(hidden), params)
        self._seen.scatter_(1, first[:, None], True)
        self._token.copy_(first)
        self._pos.fill_(length)
        chunk = [first[:n].tolist()]
        done = 1
        while True:
            for step_draws in chunk:
                if cancel is not None and cancel.is_set():  # no code follows a cancel
                    return [r or "cancelled" for r in reasons]
                codes = []
                for i, idx in enumerate(step_draws):
                    if reasons[i] is None and idx >= t.num_codes:
                        reasons[i] = "end"
                    codes.append(idx if reasons[i] is None else None)
                if any(c is not None for c in codes):
                    yield codes
            if all(r is not None for r in reasons):
                return reasons
            if done >= max_new_tokens or (cancel is not None and cancel.is_set()):
                final = "length" if done >= max_new_tokens else "cancelled"
                return [r or final for r in reasons]
            count = min(self.check_every, max_new_tokens - done)
            self._slot.zero_()
            if not params.greedy:
                self._refill_noise(generator)
            for _ in range(count):
                step()
            chunk = self._out[:n, :count].T.tolist()  # the one host sync per chunk
            done += count

    def codes(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        max_new_tokens: int,
        cancel: threading.Event | None = None,
    ) -> Generator[int, None, str]:
        """Drop-in for engine.lm.loading.generate_codes: one prompt; yields codes, returns the finish reason."""
        steps = self.generate([prompt_ids], params, max_new_tokens=max_new_tokens, cancel=cancel)
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value[0]
            yield step[0]


def check_prompts(prompts: Sequence[Sequence[int]], max_batch: int, max_length: int, max_new_tokens: int,
                  *, one_length: bool) -> None:
    """SettingsError unless 1..max_batch non-empty prompts (of one length if ``one_length``) leave room
    for ``max_new_tokens`` in a window of ``max_length`` (the generate() arguments of every decoder)."""
    n = len(prompts)
    lengths = {len(p) for p in prompts}
    if not 1 <= n <= max_batch or 0 in lengths or (one_length and len(lengths) > 1):
        shape = " of one length" if one_length else ""
        raise SettingsError(f"Give 1 to {max_batch} non-empty prompts{shape}, got {n}.")
    if max(lengths) + max_new_tokens > max_length:
        raise SettingsError(
            f"Prompt ({max(lengths)}) + max_new_tokens ({max_new_tokens}) exceed the decoder's {max_length} tokens."
        )


def check_row(row: int, prompt: Sequence[int], max_batch: int, max_length: int) -> None:
    """SettingsError unless ``prompt`` fits row ``row`` of a decoder (start_row's arguments)."""
    if not 0 <= row < max_batch or not prompt or len(prompt) >= max_length:
        raise SettingsError(f"Row {row} needs a prompt of 1 to {max_length - 1} tokens (max_batch {max_batch}).")


def _mlp(m: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The Llama MLP (down(act(gate(h)) * up(h))) through rows_linear."""
    return rows_linear(m.act_fn(rows_linear(h, m.gate_proj)) * rows_linear(h, m.up_proj), m.down_proj)
