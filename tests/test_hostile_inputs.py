"""Hostile inputs (issue 12): each is refused with exit code 2, one `error:` line, no traceback, nothing changed.

Real subprocesses of main.py against the tiny models, real damaged files on disk. A full disk is made
real with RLIMIT_FSIZE in the child process (the kernel refuses writes past the limit with EFBIG,
"File too large", the same OSError path as ENOSPC; it needs no root and no mount, so it runs in CI).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.audio.atomic import atomic_path, remove_temp_files, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def run(*args, fsize_limit: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """main.py with `args`; fsize_limit (bytes) makes every larger file write fail as on a full disk."""

    def limit() -> None:
        import resource  # POSIX only

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit if fsize_limit else None)


def call(capsys, *args) -> subprocess.CompletedProcess:
    """main.main(args) in this process (no interpreter start-up: light), as a CompletedProcess."""
    import main

    capsys.readouterr()
    code = main.main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2, exactly one `error:` line naming `words`, no traceback; returns the error line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (names relative to it) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- one atomic-write helper


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
    dest = tmp_path / "take.json"
    write_atomic(dest, b"old")
    assert dest.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("encoder died")
    assert dest.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [dest]
    write_atomic(dest, b"new")
    assert dest.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [dest]


def test_only_our_own_stale_partial_files_are_removed(tmp_path):
    ours = [tmp_path / ".book.m4b.k2j4x9q1.part", tmp_path / ".project.json.abcd.tmp"]
    theirs = [tmp_path / "book.m4b.part", tmp_path / ".other.m4b.x.part", tmp_path / "notes.part", tmp_path / ".hidden"]
    for path in ours + theirs:
        path.write_bytes(b"x")
    assert remove_temp_files(tmp_path, "book.m4b") == [ours[0]]
    assert sorted(remove_temp_files(tmp_path)) == sorted([ours[1], theirs[1]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["book.m4b.part", "notes.part", ".hidden"])


def test_no_hand_written_temp_file_dance_outside_the_helper():
    """Every file write goes through engine.audio.atomic: no other module makes temp files by hand."""
    offenders = []
    for path in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("cli/*.py"), *ROOT.glob("app/*.py")]:
        if path.name == "atomic.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "mkstemp(" in text or "NamedTemporaryFile(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


@pytest.mark.slow
def test_synth_out_on_a_full_disk_is_one_error_line_and_no_file(tiny_models, tmp_path):
    """Issue item 3: no "Exception ignored from cffi callback" blocks, no temp file left behind."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run("synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hello there.",
                 "--seed", "1", "--out", out_dir / "out.wav", fsize_limit=4096)
    assert_refused(result, "Cannot write", "out.wav", "too large")
    assert list(out_dir.iterdir()) == []


# ---------------------------------------------------------------- items 1 and 2: sampling numbers and seeds

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


# ---------------------------------------------------------------- item 4: damaged model folders


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(data | changes), encoding="utf-8")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGED_MODELS = {
    "lm config.json is a list": (lambda lm, codec: (lm / "config.json").write_text("[1, 2]"), "not a JSON object"),
    "codec config.json is a list": (lambda lm, codec: (codec / "config.json").write_text("[]"), "not a JSON object"),
    "lm weights truncated": (lambda lm, codec: _truncate(lm / "model.safetensors"), "truncated"),
    "codec weights truncated": (lambda lm, codec: _truncate(codec / "model.safetensors"), "truncated"),
    "weight index not JSON": (lambda lm, codec: (lm / "model.safetensors.index.json").write_text("{weight"),
                              "model.safetensors.index.json"),
    "vocab_size mismatch": (lambda lm, codec: _edit_json(lm / "config.json", vocab_size=70000), "vocab_size 70000"),
    "chat template syntax error": (lambda lm, codec: (lm / "chat_template.jinja").write_text("{% for x in %}"),
                                   "chat template"),
    "chat template sandbox escape": (lambda lm, codec: (lm / "chat_template.jinja").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}"),
        "SecurityError"),
    "codec decoder_heads 0": (lambda lm, codec: _edit_json(codec / "config.json", decoder_heads=0), "decoder_heads"),
}


@pytest.mark.parametrize("case", DAMAGED_MODELS)
def test_damaged_model_folders_are_refused_with_a_clear_message(tiny_models, tmp_path, capsys, case):
    import shutil

    lm, codec = tmp_path / "lm", tmp_path / "codec"
    shutil.copytree(tiny_models["lm"], lm)
    shutil.copytree(tiny_models["codec"], codec)
    damage, words = DAMAGED_MODELS[case]
    damage(lm, codec)
    out = tmp_path / "out"
    out.mkdir()
    result = call(capsys, "synth", "--lm", lm, "--codec", codec, "--text", "Hi.", "--out", out / "out.wav", "--device", "cpu")
    assert_refused(result, words)
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------- item 6: damaged project.json (and item 10: cover)


def _project(tmp_path: Path, lm: str = "lm", codec: str = "codec") -> Path:
    """A real, tiny project folder written by NarrationProject.create (no model needed to write it).

    A slow speaking rate (0.04 tokens per character) keeps each segment's runaway cap near 50 tokens,
    so the tiny random LM (which never stops by itself) renders a segment in seconds."""
    from engine.book.project import NarrationProject, NarrationSettings, ProjectChapter, Segment
    from engine.voices import VoiceLibrary

    voice = VoiceLibrary(tmp_path / "lib").add("Narrator", np.zeros(16000, np.float32) + 0.1, "Hello.", [1, 2, 3], "tiny")
    chapters = [ProjectChapter("One", "Hello world. Good night.", (Segment("c0s0", "Hello world.", 0.5),
                                                                   Segment("c0s1", "Good night.", 2.0)))]
    folder = tmp_path / "project"
    NarrationProject.create(folder, title="Book", author="A", chapters=chapters, voice=voice,
                            settings=NarrationSettings(lm=str(lm), codec=str(codec), base_seed=3), max_tokens=500,
                            tokens_per_char=0.04)
    return folder


def _set(meta: dict, where: str, value) -> None:
    """meta at JSON path `where` (a.b[0].c) = value."""
    import re

    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", where)]
    target = meta
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


DAMAGED_PROJECTS = [
    ("settings", [], "settings must be an object"),
    ("chapters[0].segments[1].text", None, "chapters[0].segments[1].text must be text, not null"),
    ("version", "1", "version must be a whole number"),
    ("title", 5, "title must be text"),
    ("chapters", {}, "chapters must be a list"),
    ("chapters[0].segments[0]", "Hello", "chapters[0].segments[0] must be an object"),
    ("chapters[0].segments[0].chosen", 3, "chapters[0].segments[0].chosen must be a take"),
    ("chapters[0].selected", "yes", "chapters[0].selected must be true/false"),
    ("settings.temperature", "hot", "settings.temperature must be a number"),
    ("settings.top_p", 7, "top_p must be in (0, 1]"),
    ("settings.base_seed", -1, "base_seed must be in 0 to"),
    ("max_tokens", None, "max_tokens must be a whole number"),
    ("cover", "../outside.jpg", "cover must be a file name inside the project"),
    ("cover", "/etc/passwd", "cover must be a file name inside the project"),
]


@pytest.mark.parametrize("where, value, message", DAMAGED_PROJECTS, ids=[f"{w}={v!r}" for w, v, _ in DAMAGED_PROJECTS])
def test_damaged_project_json_is_named_where_and_what(tmp_path, capsys, where, value, message):
    folder = _project(tmp_path)
    meta = json.loads((folder / "project.json").read_text(encoding="utf-8"))
    _set(meta, where, value)
    (folder / "project.json").write_text(json.dumps(meta), encoding="utf-8")
    before = snapshot(folder)
    line = assert_refused(call(capsys, "narrate", folder), "project.json is damaged" if where != "cover" else "cover", message)
    assert "newer Llasa Studio" not in line
    assert snapshot(folder) == before


def test_a_cover_link_out_of_the_project_is_refused(tmp_path, capsys):
    folder = _project(tmp_path)
    (tmp_path / "secret.jpg").write_bytes(b"not yours")
    (folder / "cover.jpg").symlink_to(tmp_path / "secret.jpg")
    meta = json.loads((folder / "project.json").read_text(encoding="utf-8"))
    (folder / "project.json").write_text(json.dumps(meta | {"cover": "cover.jpg"}), encoding="utf-8")
    assert_refused(call(capsys, "narrate", folder), "cover", "points outside the project folder")


# ---------------------------------------------------------------- item 7: damaged take audio


def _with_takes(tmp_path: Path, **models) -> Path:
    """The tiny project with both segments rendered (real FLAC takes of noise, marked done)."""
    import torch

    from engine.book.project import NarrationProject, Runtime, TakeRecord
    from engine.lm.device import default_precision

    folder = _project(tmp_path, **models)
    project = NarrationProject.open(folder)
    # keyed for the runtime `narrate --device cpu` resolves here (the take key holds it)
    project.use_runtime(Runtime("cpu", default_precision(torch.device("cpu"))))
    rng = np.random.default_rng(0)
    for _, segment in project.segments():
        audio = (rng.standard_normal(16000) * 0.1).astype(np.float32)
        record = TakeRecord(project.take_key(segment), 0, project.take_seed(segment), "end", 1.0, 50)
        project.write_take(segment, 0, audio, record)
    return folder


DAMAGE = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:-200]),
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(os.urandom(3000)),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_take_becomes_pending_on_open_and_export_refuses_cleanly(tmp_path, damage):
    from engine.book.narration import export_project
    from engine.book.project import DONE, PENDING, NarrationProject
    from engine.errors import ProjectError

    folder = _with_takes(tmp_path)
    project = NarrationProject.open(folder)
    first, second = [s for _, s in project.segments()]
    DAMAGE[damage](project.take_path(second))
    reopened = NarrationProject.open(folder)
    assert [reopened.status(first), reopened.status(second)] == [DONE, PENDING]
    assert len(reopened.notices) == 1 and "damaged" in reopened.notices[0]
    assert not project.take_path(second).exists()  # its .flac and .json are gone: it is simply pending
    with pytest.raises(ProjectError, match="not rendered yet"):
        export_project(reopened, tmp_path / "book.wav", "wav")
    # damaged after opening (another program, a disk error): export re-checks and refuses the same clean way
    DAMAGE[damage](project.take_path(first))
    with pytest.raises(ProjectError, match="damaged on disk"):
        export_project(project, tmp_path / "book.wav", "wav")
    assert project.status(first) == PENDING and not (tmp_path / "book.wav").exists()


@pytest.mark.slow
def test_resume_renders_a_damaged_take_again_and_exports(tiny_models, tmp_path, capsys):
    """End state: the damaged take is rendered again, the book exports; one warning says what happened."""
    from engine.book.project import DONE, NEEDS_CHECK, NarrationProject

    folder = _with_takes(tmp_path, lm=tiny_models["lm"], codec=tiny_models["codec"])
    project = NarrationProject.open(folder)
    second = [s for _, s in project.segments()][1]
    DAMAGE["truncated"](project.take_path(second))
    result = call(capsys, "narrate", folder, "--device", "cpu", "--export", "wav", "--out", tmp_path / "book.wav")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sum("warning:" in line and "damaged" in line for line in result.stderr.splitlines()) == 1
    assert "(1 this run)" in result.stderr
    project = NarrationProject.open(folder)
    # the tiny random LM never says "end", so the new take hits its cap: needs-check, exported as it is
    assert [project.status(s) for _, s in project.segments()] == [DONE, NEEDS_CHECK] and not project.notices
    assert sf.info(tmp_path / "book.wav").frames > 16000


# ---------------------------------------------------------------- item 5: quality mode without Whisper


def test_quality_mode_without_whisper_creates_nothing(tiny_models, tmp_path, capsys, monkeypatch):
    from engine.voices import VoiceLibrary

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # no model downloaded; nothing fetched
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = VoiceLibrary(tmp_path / "lib").add("N", np.zeros(16000, np.float32) + 0.1, "Hello.", [1, 2, 3], "tiny")
    voice = VoiceLibrary(tmp_path / "lib").export(saved.id, tmp_path / "n.llasavoice")
    book = tmp_path / "book.txt"
    book.write_text("Chapter 1\n\nA short story.\n", encoding="utf-8")
    result = call(capsys, "narrate", tmp_path / "project", "--text-file", book, "--voice", voice, "--lm",
                  tiny_models["lm"], "--codec", tiny_models["codec"], "--candidates", "2")
    assert_refused(result, "Whisper", "not on this computer", "--asr none")
    assert not (tmp_path / "project").exists() and "Loading models" not in result.stderr


# ---------------------------------------------------------------- item 10: an empty book


@pytest.mark.parametrize("name, content", [("book.md", "#\n##\n\n###   \n\n#\n"), ("book.md", "# \n\n***\n\n---\n"),
                                           ("book.txt", "\n\n  \n...\n")])
def test_a_book_without_words_is_refused_before_creating(tmp_path, capsys, name, content):
    book = tmp_path / name
    book.write_text(content, encoding="utf-8")
    voice = tmp_path / "n.llasavoice"
    voice.write_bytes(b"checked after the book")
    result = call(capsys, "narrate", tmp_path / "project", "--text-file", book, "--voice", voice)
    assert_refused(result, name, "no text to narrate")
    assert not (tmp_path / "project").exists()


# ---------------------------------------------------------------- item 9: narrate into a full disk


@pytest.mark.slow
def test_narrate_into_a_full_disk_is_one_error_line_and_keeps_the_project(tiny_models, tmp_path):
    import torch

    from engine.book.project import NarrationProject, Runtime
    from engine.lm.device import default_precision

    folder = _project(tmp_path, lm=tiny_models["lm"], codec=tiny_models["codec"])
    # narrated on this runtime before: the run only adds takes (runtime.json is recorded before rendering)
    NarrationProject.open(folder).use_runtime(Runtime("cpu", default_precision(torch.device("cpu"))))
    before = snapshot(folder)
    result = run("narrate", folder, "--device", "cpu", fsize_limit=8192)  # a take's FLAC is larger: EFBIG
    assert_refused(result, "Cannot write", "File too large", "finished segments are kept", "resume")
    assert snapshot(folder) == before  # no take, no temporary file


# ---------------------------------------------------------------- item 11: out of memory


def _fail_like_a_full_memory(kind: str):
    """A replacement for torch.nn.functional.linear (the first op of every forward pass) that fails as memory does.

    "cpu": a real allocation the CPU allocator refuses (2**45 floats = 128 TiB), raising torch's own
    "DefaultCPUAllocator: can't allocate memory" RuntimeError. "cuda": torch.OutOfMemoryError raised by
    hand, because there is no CUDA device here to run out of.
    """
    import torch

    def linear(*args, **kwargs):
        if kind == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.7 GiB total)")
        return torch.empty(2**45)

    return linear


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_out_of_memory_while_generating_is_one_line_with_advice(tiny_models, tmp_path, capsys, monkeypatch, kind):
    import torch

    monkeypatch.setattr(torch.nn.functional, "linear", _fail_like_a_full_memory(kind))
    result = call(capsys, "synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hello.",
                  "--device", "cpu", "--out", tmp_path / "out.wav")
    line = assert_refused(result, "Out of memory", "GPU" if kind == "cuda" else "computer", "generating speech",
                          "smaller model", "4-bit", "shorter text", "close other apps")
    assert "DefaultCPUAllocator" not in line and list(tmp_path.iterdir()) == []


def test_out_of_memory_while_loading_is_one_line_with_advice(tiny_models, tmp_path, capsys, monkeypatch):
    """MemoryError is what Python raises when loading runs out of memory; raised here from the loader's call."""
    import transformers

    def from_pretrained(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    result = call(capsys, "synth", "--lm", tiny_models["lm"], "--codec", tiny_models["codec"], "--text", "Hello.",
                  "--device", "cpu", "--out", tmp_path / "out.wav")
    assert_refused(result, "Out of memory", "loading the models", "smaller model")


def test_out_of_memory_in_narrate_says_the_finished_takes_are_kept(tiny_models, tmp_path, capsys, monkeypatch):
    import torch

    folder = _with_takes(tmp_path, lm=tiny_models["lm"], codec=tiny_models["codec"])
    project_json = folder / "project.json"
    from engine.book.project import NarrationProject

    project = NarrationProject.open(folder)
    second = [s for _, s in project.segments()][1]
    DAMAGE["empty"](project.take_path(second))  # one segment to render again; the other stays done
    before = {k: v for k, v in snapshot(folder).items() if not k.startswith("takes/" + second.id)}
    monkeypatch.setattr(torch.nn.functional, "linear", _fail_like_a_full_memory("cpu"))
    result = call(capsys, "narrate", folder, "--device", "cpu")
    assert_refused(result, "Out of memory", "narrating", "finished segments are kept")
    assert "nothing was written" not in result.stderr
    kept = NarrationProject.open(folder)
    assert kept.status([s for _, s in kept.segments()][0]) == "done"
    assert project_json.read_bytes() == before["project.json"]


# ---------------------------------------------------------------- item 8: kill -9 during an export


_EXPORT_THEN_DIE = """
import os, signal, sys
import numpy as np
from engine.book.export import BookMetadata, ChapterAudio, export_book

calls = []

def chapter():
    calls.append(1)
    if len(calls) == 3:  # the write pass (after two measuring passes): the .part file exists, half written
        os.kill(os.getpid(), signal.SIGKILL)
    return np.full(16000, 0.1, np.float32)

export_book([ChapterAudio("One", chapter), ChapterAudio("Two", chapter)], sys.argv[1], fmt=sys.argv[2],
            metadata=BookMetadata("Book"))
"""


def _wait_for_group_exit(pgid: int) -> None:
    import time

    for _ in range(1200):  # at most ~60 s (a container without an init may keep a zombie in the group)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("fmt", ["wav", "m4b"])
def test_export_after_a_kill_9_removes_the_partial_file_it_left(tmp_path, fmt):
    from engine.book.export import BookMetadata, ChapterAudio, export_book

    dest = tmp_path / f"book.{fmt}"
    killed = subprocess.Popen([sys.executable, "-c", _EXPORT_THEN_DIE, dest, fmt], cwd=ROOT, start_new_session=True,
                              env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert killed.wait(timeout=120) == -signal.SIGKILL
    _wait_for_group_exit(killed.pid)  # the orphaned ffmpeg (m4b) finishes writing its .part file first
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".book.{fmt}.") and left[0].endswith(".part")  # what kill -9 left
    (tmp_path / "notes.part").write_bytes(b"someone else's")  # not ours: stays
    export_book([ChapterAudio("One", lambda: np.full(16000, 0.1, np.float32))], dest, fmt=fmt,
                metadata=BookMetadata("Book"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, "notes.part"])


@pytest.mark.slow
def test_out_of_memory_in_the_engine_thread_fails_the_job_and_the_engine_stays_usable(tiny_models, tmp_path,
                                                                                          monkeypatch):
    import torch

    from engine.config import ModelChoice, SamplingParams
    from engine.session import EngineSession, ExportAudio, Exported, Failed, Generate, LoadModels, ModelsLoaded
    from engine_events import EventRecorder

    recorder = EventRecorder((ModelsLoaded, Failed, Exported))
    session = EngineSession(emit=recorder)
    session.start()
    try:
        session.submit(LoadModels(ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu")))
        assert isinstance(recorder.final(), ModelsLoaded)
        monkeypatch.setattr(torch.nn.functional, "linear", _fail_like_a_full_memory("cuda"))
        session.submit(Generate("g1", "Hello there.", None, SamplingParams(seed=1)))
        failed = recorder.final()
        assert isinstance(failed, Failed) and failed.request_id == "g1"
        assert failed.message.startswith("Out of memory (the GPU's)") and "4-bit" in failed.message
        monkeypatch.undo()
        session.submit(ExportAudio("e1", np.zeros(1600, np.float32), tmp_path / "ok.wav"))
        assert isinstance(recorder.final(), Exported)  # the engine thread lives on
    finally:
        assert session.shutdown(timeout=60)
