"""AppSettings round-trips through a real INI file; the Preferences dialog refuses invalid values."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings  # noqa: E402

from app.settings import AppSettings  # noqa: E402
from app.settings_dialog import SettingsDialog  # noqa: E402
from engine.audio import devices  # noqa: E402
from engine.config import ModelChoice, SamplingParams  # noqa: E402


def ini(path: Path) -> AppSettings:
    return AppSettings(QSettings(str(path), QSettings.Format.IniFormat))


def test_defaults_are_the_engines(tmp_path):
    s = ini(tmp_path / "s.ini")
    assert s.to_model_choice() == ModelChoice()
    assert s.to_sampling_params() == SamplingParams()
    assert s.input_device is None and s.output_device is None and s.models_folder is None
    assert s.voices_folder.name == "voices"


def test_round_trip_through_the_ini_file(tmp_path):
    path = tmp_path / "s.ini"
    s = ini(path)
    s.lm, s.codec, s.quantization, s.device = str(tmp_path / "lm"), "me/codec", "bf16", "cpu"
    s.backend, s.gguf_precision = "llamacpp", "q4_k_m"
    s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.seed = 0.5, 0.9, 40, 1.1, 1234
    s.input_device, s.output_device = 3, 0
    s.voices_folder, s.models_folder = tmp_path / "voices", tmp_path / "models"
    s.sync()
    assert "temperature=0.5" in path.read_text()

    again = ini(path)
    assert again.to_model_choice() == ModelChoice(str(tmp_path / "lm"), "me/codec", "bf16", "cpu", "llamacpp", "q4_k_m")
    assert again.to_sampling_params() == SamplingParams(0.5, 0.9, 40, 1.1, 1234)
    assert (again.input_device, again.output_device) == (3, 0)  # 0 is a device, not "unset"
    assert again.voices_folder == tmp_path / "voices" and again.models_folder == tmp_path / "models"

    again.seed, again.quantization, again.output_device = None, None, None  # back to random / auto / default
    again.sync()
    third = ini(path)
    assert third.seed is None and third.quantization is None and third.output_device is None


def test_hand_edited_garbage_falls_back_to_the_default(tmp_path):
    path = tmp_path / "s.ini"
    path.write_text("[sampling]\ntemperature=warm\ntop_k=lots\n")
    s = ini(path)
    assert s.temperature == SamplingParams().temperature and s.top_k == SamplingParams().top_k


@pytest.fixture
def dialog(qtbot, tmp_path):
    settings = ini(tmp_path / "s.ini")
    settings.voices_folder = tmp_path / "voices"
    d = SettingsDialog(settings)
    qtbot.addWidget(d)
    return d


def test_valid_values_are_saved_on_ok(dialog, tmp_path):
    (tmp_path / "lm").mkdir()
    dialog.lm_combo.setCurrentText(str(tmp_path / "lm"))
    dialog.quant_combo.setCurrentIndex(dialog.quant_combo.findData("fp32"))
    dialog.temperature_spin.setValue(0.6)
    dialog.random_seed_check.setChecked(False)
    dialog.seed_spin.setValue(7)
    dialog.accept()
    assert dialog.result() == SettingsDialog.DialogCode.Accepted and dialog.error_text() == ""
    s = ini(tmp_path / "s.ini")
    assert s.to_model_choice() == ModelChoice(lm=str(tmp_path / "lm"), quantization="fp32")
    assert s.to_sampling_params() == SamplingParams(temperature=0.6, seed=7)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d, tmp: d.lm_combo.setCurrentText(str(tmp / "no-such-model")), "does not exist"),
        (lambda d, tmp: d.lm_combo.setCurrentText("not a repo id!"), "neither a Hugging Face repo id"),
        (lambda d, tmp: d.codec_edit.setText(""), "Choose the codec"),
        (lambda d, tmp: d.top_p_spin.setValue(0.0), "top_p must be in (0, 1]"),
        (lambda d, tmp: d.repetition_spin.setValue(0.0), "repetition_penalty must be in (0, 10]"),
        (lambda d, tmp: d.voices_edit.setText(str(tmp / "s.ini")), "is a file"),
        (lambda d, tmp: d.voices_edit.setText(""), "Choose a voices folder"),
    ],
)
def test_invalid_values_keep_the_dialog_open_with_a_message(dialog, tmp_path, change, message):
    before = (tmp_path / "s.ini").read_text() if (tmp_path / "s.ini").exists() else ""
    change(dialog, tmp_path)
    dialog.accept()
    assert message in dialog.error_text()
    assert not dialog.error_label.isHidden()
    assert dialog.result() != SettingsDialog.DialogCode.Accepted
    after = (tmp_path / "s.ini").read_text() if (tmp_path / "s.ini").exists() else ""
    assert after == before  # nothing saved


def test_advanced_sampling_is_collapsible_and_defaults_restore(dialog):
    assert dialog.advanced_box.isHidden()
    dialog.advanced_toggle.click()
    assert not dialog.advanced_box.isHidden()
    dialog.top_k_spin.setValue(50)
    dialog.restore_defaults()
    assert dialog.top_k_spin.value() == SamplingParams().top_k
    assert dialog.random_seed_check.isChecked() and not dialog.seed_spin.isEnabled()


def test_audio_tab_lists_devices_or_says_why_not(dialog):
    reason = devices.audio_unavailable_reason()
    if reason is None:
        assert dialog.input_combo.isEnabled() and dialog.output_combo.isEnabled()
        assert dialog.output_combo.count() >= 1
    else:
        assert not dialog.input_combo.isEnabled() and not dialog.output_combo.isEnabled()
        assert reason in dialog.audio_reason_label.text() and reason in dialog.output_combo.toolTip()


def test_every_control_has_an_accessible_name(dialog):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QTabBar

    controls = dialog.findChildren(QAbstractSpinBox) + dialog.findChildren(QComboBox)
    controls += dialog.findChildren(QLineEdit) + dialog.findChildren(QAbstractButton)
    internal = (QAbstractSpinBox, QComboBox, QTabBar)  # Qt's own sub-widgets
    unnamed = [
        c for c in controls
        if not c.accessibleName() and not (isinstance(c, QAbstractButton) and c.text())
        and not isinstance(c.parent(), internal)
    ]
    assert unnamed == []
