"""Hostile CLI numbers (issue 12, items 1 and 2): sampling values and seeds out of range are refused before
any model loads or any project is created; a tiny positive temperature decodes greedily."""
from __future__ import annotations

import pytest

from hostile import assert_refused, call, run


BAD_SAMPLING = [
    (("--temperature", "nan"), "temperature"),
    (("--temperature", "inf"), "temperature"),
    (("--temperature", "-0.5"), "temperature"),
    (("--repetition-penalty", "nan"), "repetition_penalty"),
    (("--repetition-penalty", "0"), "repetition_penalty"),
    (("--top-p", "0"), "top_p"),
    (("--top-p", "1.5"), "top_p"),
    (("--top-k", "-1"), "top_k"),
    (("--seed", "1180591620717411303424"), "seed"),
    (("--seed", "-3"), "seed"),
]


@pytest.mark.parametrize("flag, name", BAD_SAMPLING, ids=[" ".join(f) for f, _ in BAD_SAMPLING])
def test_synth_refuses_bad_sampling_numbers_before_loading(tiny_models, tmp_path, capsys, flag, name):
    result = call(capsys, "synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hi.",
                 "--out", tmp_path / "out.wav", *flag)
    line = assert_refused(result, name)
    assert " in " in line  # the message states the accepted range
    assert "Loading models" not in result.stderr and list(tmp_path.iterdir()) == []


def test_synth_nan_temperature_in_a_real_process(tiny_models, tmp_path):
    result = run("synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hi.",
                 "--out", tmp_path / "out.wav", "--temperature", "nan")
    assert_refused(result, "temperature", "[0, 5]")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag, name", BAD_SAMPLING[::3], ids=[" ".join(f) for f, _ in BAD_SAMPLING[::3]])
def test_narrate_refuses_bad_sampling_numbers_before_creating(tiny_models, tmp_path, capsys, flag, name):
    book = tmp_path / "book.txt"
    book.write_text("Chapter 1\n\nA short story.\n", encoding="utf-8")
    voice = tmp_path / "narrator.llasavoice"
    voice.write_bytes(b"checked later")
    result = call(capsys, "narrate", tmp_path / "project", "--text-file", book, "--voice", voice,
                  "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], *flag)
    assert_refused(result, name)
    assert not (tmp_path / "project").exists()


def test_tiny_positive_temperature_decodes_greedily():
    """--temperature 1e-45 used to divide the logits into inf/nan ("probability tensor contains inf, nan");
    below GREEDY_BELOW the sampler takes the argmax, as at temperature 0 (the decoder checks the same flag)."""
    import torch

    from engine.config import GREEDY_BELOW, SamplingParams
    from engine.lm.sampling import sample_next

    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0)) * 30
    for temperature in (1e-45, 1e-30, GREEDY_BELOW / 2):
        params = SamplingParams(temperature=temperature, top_p=0.9, top_k=50)
        assert params.greedy
        assert torch.equal(sample_next(logits, params), logits.argmax(-1))
    assert not SamplingParams(temperature=GREEDY_BELOW).greedy
    assert torch.isfinite(logits / GREEDY_BELOW).all()  # the smallest sampled temperature cannot overflow
