"""ModelsDialog: consent gating, the local-folder route, and a hub that cannot be reached."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import functools
import socket

import pytest
from huggingface_hub import constants
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.models_dialog import ModelsDialog, human_bytes
from engine.config import ModelChoice
from test_downloads import hub  # noqa: F401 (fixture: the local fake hub)


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so nothing counts as installed."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def dialog(qtbot, empty_hf_cache):
    d = ModelsDialog(first_run=True)
    qtbot.addWidget(d)
    d.show()
    return d


def test_human_bytes():
    assert [human_bytes(n) for n in (512, 2_782_000_000, 17_181_000_000, 3_290_000)] == [
        "512 B", "2.8 GB", "17.2 GB", "3.3 MB",
    ]


def test_lists_catalog_and_gates_download_on_consent(dialog):
    assert dialog.windowTitle() == "Set up Llasa Studio"
    texts = [dialog.lm_buttons[k].text() for k in ("1B", "3B", "8B")]
    assert texts[0] == "Llasa 1B — 2.8 GB — not downloaded"
    assert all("not downloaded" in t for t in texts)
    assert "X-Codec2" in dialog.codec_label.text() and "3.3 GB" in dialog.codec_label.text()
    assert "CC-BY-NC-4.0" in dialog.licence_label.text()
    assert dialog.lm_buttons["1B"].isChecked()  # the default model
    assert not dialog.download_button.isEnabled()
    assert not dialog.ok_button.isEnabled()  # nothing installed yet
    dialog.consent_box.setChecked(True)
    assert dialog.download_button.isEnabled()
    dialog.consent_box.setChecked(False)
    assert not dialog.download_button.isEnabled()
    assert dialog.chosen_quantization() is None  # automatic: 4bit on CUDA, fp32 on CPU
    dialog.quant_combo.setCurrentIndex(dialog.quant_combo.findData("8bit"))
    assert dialog.chosen_quantization() == "8bit" and "half" in dialog.quant_note.text()
    assert {w.accessibleName() for w in (dialog.download_button, dialog.consent_box, dialog.local_button)} == {
        "Download", "Consent", "Use a local folder",
    }


def test_local_folders_valid_and_wrong(dialog, tiny_models, tmp_path):
    wrong = tmp_path / "not-a-model"
    wrong.mkdir()
    assert not dialog.use_local_folder(str(wrong))
    assert "cannot be used" in dialog.status_label.text() and "no config.json" in dialog.status_label.text()
    assert not dialog.ok_button.isEnabled()

    assert dialog.use_local_folder(str(tiny_models["lm"]))
    assert dialog.lm_buttons["local"].isChecked() and dialog.lm_buttons["local"].isVisible()
    assert not dialog.ok_button.isEnabled()  # the codec is still missing
    assert dialog.use_local_folder(str(tiny_models["codec"]))
    assert "Using the X-Codec2 codec" in dialog.status_label.text()
    assert dialog.ok_button.isEnabled()
    QTest.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == ModelsDialog.DialogCode.Accepted
    assert dialog.chosen_lm() == str(tiny_models["lm"]) and dialog.chosen_codec() == str(tiny_models["codec"])
    assert dialog.chosen() == ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]))


def test_reopens_on_the_current_local_choice(qtbot, empty_hf_cache, tiny_models):
    current = ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), quantization="bf16")
    d = ModelsDialog(current=current)
    qtbot.addWidget(d)
    assert d.windowTitle() == "Models"
    assert d.chosen() == current and d.ok_button.isEnabled()  # works offline: nothing to download


def test_hub_unreachable_says_so_and_stays_usable(dialog, qtbot, monkeypatch, tiny_models):
    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    dialog.consent_box.setChecked(True)
    QTest.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert dialog.is_downloading()
    assert not dialog.lm_buttons["3B"].isEnabled()  # choices are locked while downloading
    qtbot.waitUntil(lambda: not dialog.is_downloading(), timeout=60_000)
    text = dialog.status_label.text()
    assert "Cannot reach 127.0.0.1" in text and "Use a local folder" in text
    assert dialog.download_button.isEnabled() and dialog.local_button.isEnabled()
    assert dialog.lm_buttons["3B"].isEnabled()
    # the plain route still works after the failure
    assert dialog.use_local_folder(str(tiny_models["lm"])) and dialog.use_local_folder(str(tiny_models["codec"]))
    assert dialog.ok_button.isEnabled()


def test_a_folder_holding_lm_and_codec_is_understood(dialog, tiny_models):
    parent = tiny_models["lm"].parent
    assert dialog.use_local_folder(str(parent))
    assert dialog.chosen_lm() == str(tiny_models["lm"]) and dialog.chosen_codec() == str(tiny_models["codec"])
    assert dialog.ok_button.isEnabled()


def test_a_failed_download_does_not_leave_the_bar_starting(dialog, qtbot, monkeypatch):
    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    dialog.consent_box.setChecked(True)
    QTest.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert dialog.progress_bar.isVisible() and dialog.progress_bar.format() == "Starting…"
    qtbot.waitUntil(lambda: not dialog.is_downloading(), timeout=60_000)
    assert not dialog.progress_bar.isVisible()


def test_checking_models_download_in_the_dialog(qtbot, empty_hf_cache, monkeypatch, hub, tiny_models):
    """Whisper and the speaker model are offered like the voice models. Only the hub transfer is faked:
    the hub is test_downloads' local server, and a verifier entry points at its repo."""
    from engine.models import downloads
    from test_downloads import REPO

    fake = downloads.CatalogEntry("asr", REPO, "Whisper small (speech recognition)", 5_000_000, "test entry")
    monkeypatch.setattr(downloads, "VERIFIER_CATALOG", (fake,) + downloads.VERIFIER_CATALOG[1:])
    monkeypatch.setattr(downloads, "download", functools.partial(downloads.download, endpoint=hub))  # to the local hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    current = ModelChoice(lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]))
    d = ModelsDialog(current=current)
    qtbot.addWidget(d)
    d.show()
    boxes = d.verifier_boxes
    assert set(boxes) == {"asr", "asr-large", "speaker"}
    assert "not downloaded" in boxes["asr"].text() and "WavLM" in boxes["speaker"].text()
    assert d.ok_button.isEnabled()  # checking models are optional
    assert not d.download_button.isEnabled()  # nothing ticked
    boxes["asr"].setChecked(True)
    d.consent_box.setChecked(True)
    assert d.download_button.isEnabled()
    QTest.mouseClick(d.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not d.is_downloading(), timeout=60_000)
    assert d.status_label.text() == "Download complete."
    assert downloads.installed_path(REPO) is not None
    qtbot.waitUntil(lambda: "installed at" in boxes["asr"].text(), timeout=10_000)
    assert not boxes["asr"].isEnabled()  # installed: nothing to tick


def test_the_speaker_model_fetches_its_weights_only_pickle(hub, tmp_path, monkeypatch):
    """microsoft/wavlm-base-plus-sv has only pytorch_model.bin: its entry fetches it (weights-only loading)."""
    from engine.models import downloads
    from test_downloads import FILES, REPO

    entry = downloads.CatalogEntry("speaker", REPO, "WavLM", 1, "test entry", pickle_weights=True)
    monkeypatch.setattr(downloads, "VERIFIER_CATALOG", (entry,))
    folder = downloads.download(REPO, endpoint=hub, cache_dir=tmp_path)
    assert (folder / "pytorch_model.bin").read_bytes() == FILES["pytorch_model.bin"]
    assert downloads.installed_path(REPO, cache_dir=tmp_path) == folder


def test_llamacpp_engine_and_precision_choice_with_sizes(qtbot, empty_hf_cache):
    current = ModelChoice(backend="llamacpp", gguf_precision="q4_k_m")
    d = ModelsDialog(current=current)
    qtbot.addWidget(d)
    assert d.chosen_backend() == "llamacpp" and d.chosen_gguf_precision() == "q4_k_m"
    d.lm_buttons["1B"].setChecked(True)  # 2.782 GB of bf16 safetensors -> ~1.39 G weights
    texts = [d.gguf_combo.itemText(i) for i in range(d.gguf_combo.count())]
    assert texts == ["Q8_0 (default) — about 1.5 GB", "Q4_K_M (fastest) — about 852.0 MB", "BF16 (exact) — about 2.8 GB"]
    d.lm_buttons["8B"].setChecked(True)
    assert d.gguf_combo.itemText(0) == "Q8_0 (default) — about 9.1 GB"
    d.gguf_combo.setCurrentIndex(d.gguf_combo.findData("bf16"))
    d.backend_combo.setCurrentIndex(d.backend_combo.findData("auto"))
    assert (d.chosen().backend, d.chosen().gguf_precision) == ("auto", "bf16")
    fresh = ModelsDialog()
    qtbot.addWidget(fresh)
    assert (fresh.chosen_backend(), fresh.chosen_gguf_precision()) == ("auto", "q8_0")  # the defaults
