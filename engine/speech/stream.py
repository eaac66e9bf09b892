"""Windowed X-Codec2 decoding: speech codes in as they are generated, audio chunks out.

The codec's decoder attends over the whole sequence, so a code's audio depends on its neighbours.
Each chunk is therefore decoded inside a window: a bounded left context (the reference's codes, then
the speech generated so far) and a small look-ahead; the window's output is cropped to the chunk,
and consecutive chunks overlap by a few frames that are cross-faded. The concatenated chunks match
one decode of prefix + all codes, cut after the prefix (what Synthesizer.decode returns), to within
the figures tests/test_stream.py reports, while each decode call stays bounded in length.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from engine.audio.clip import FRAME_RATE, HOP_LENGTH

# Chunk sizes in frames (50 per second). Chunks grow from FIRST_CHUNK_FRAMES, each as long as all the
# audio before it, up to CHUNK_FRAMES: audio starts early, and a generator at least twice as fast as
# real time never lets playback run dry. The first chunk needs 12 + 6 + 3 codes (0.42 s of speech).
FIRST_CHUNK_FRAMES = 12  # 0.24 s
CHUNK_FRAMES = FRAME_RATE  # 1 s: each later chunk costs one windowed decode
# Context sizes, chosen on the full-size decoder (tests/test_stream.py): with 8 s of left context the
# streamed audio is within ~2 dB SNR of what unbounded history gives; 0.12 s of look-ahead covers the
# convolutions' and ISTFT's reach (less costs SNR at chunk ends, more buys nothing).
LEFT_CONTEXT_FRAMES = FRAME_RATE * 8  # 8 s of earlier codes decoded in front of every chunk
LOOKAHEAD_FRAMES = 6  # 0.12 s of later codes decoded after every chunk
CROSSFADE_FRAMES = 3  # 60 ms overlap between consecutive chunks, cross-faded


class StreamingDecoder:
    """Turns speech codes, pushed as they come, into consecutive float32 16 kHz audio chunks.

    push() returns the chunks that became ready (possibly none); flush() returns the rest once no
    more codes will come. All chunks together hold exactly len(codes) * HOP_LENGTH samples. The
    first chunk is ready after first_frames + lookahead_frames + crossfade_frames codes. Each
    decode call covers at most left_frames + chunk_frames + lookahead_frames + crossfade_frames
    codes, however long the speech.
    """

    def __init__(
        self,
        codec,
        prefix_codes: Sequence[int] = (),
        *,
        first_frames: int = FIRST_CHUNK_FRAMES,
        chunk_frames: int = CHUNK_FRAMES,
        left_frames: int = LEFT_CONTEXT_FRAMES,
        lookahead_frames: int = LOOKAHEAD_FRAMES,
        crossfade_frames: int = CROSSFADE_FRAMES,
    ) -> None:
        if min(first_frames, chunk_frames) < 1 or min(left_frames, lookahead_frames, crossfade_frames) < 0:
            raise ValueError("chunk sizes must be >= 1 frame and context sizes >= 0 frames")
        self.codec = codec  # engine.codec.model.XCodec2 (anything with its decode())
        self._codes = [int(c) for c in prefix_codes]
        self._prefix = len(self._codes)
        self._first, self._chunk = first_frames, chunk_frames
        self._left, self._ahead, self._fade = left_frames, lookahead_frames, crossfade_frames
        self._done = 0  # generated frames already returned as audio
        self._tail = np.zeros(0, np.float32)  # audio of the next `fade` frames, to cross-fade in
        fade = crossfade_frames * HOP_LENGTH
        ramp = (np.arange(fade, dtype=np.float64) + 0.5) / max(fade, 1)
        self._fade_in = (np.sin(0.5 * np.pi * ramp) ** 2).astype(np.float32)  # sin² + cos² = 1

    @property
    def generated_frames(self) -> int:
        """Speech codes pushed so far (the prefix not counted)."""
        return len(self._codes) - self._prefix

    def push(self, codes: Sequence[int]) -> list[np.ndarray]:
        """Add generated codes (ints 0..65535); returns the audio chunks now ready, float32 [samples]."""
        self._codes.extend(int(c) for c in codes)
        chunks = []
        while True:
            end = self._done + min(self._chunk, max(self._first, self._done))
            if self.generated_frames < end + self._fade + self._ahead:
                return chunks
            chunks.append(self._decode_until(end, with_tail=True))

    def flush(self) -> np.ndarray:
        """Audio of every code not yet returned, float32 [samples] (empty when there is none)."""
        if self._done >= self.generated_frames:
            return np.zeros(0, np.float32)
        return self._decode_until(self.generated_frames, with_tail=False)

    def _decode_until(self, end: int, *, with_tail: bool) -> np.ndarray:
        """Decode one window and return the audio of generated frames [done, end)."""
        start = self._prefix + self._done  # first frame of this chunk, in self._codes
        stop = self._prefix + end + (self._fade + self._ahead if with_tail else 0)
        first = max(0, start - self._left)
        window = torch.tensor(self._codes[first:stop], dtype=torch.long)
        wave = self.codec.decode(window)[0].float().cpu().numpy()
        keep = (self._prefix + end + (self._fade if with_tail else 0) - start) * HOP_LENGTH
        audio = wave[(start - first) * HOP_LENGTH :][:keep].astype(np.float32, copy=True)
        if len(self._tail):
            n = len(self._tail)
            audio[:n] = self._tail * (1.0 - self._fade_in) + audio[:n] * self._fade_in
        cut = (end - self._done) * HOP_LENGTH
        audio, self._tail = audio[:cut], audio[cut:]
        self._done = end
        return audio
