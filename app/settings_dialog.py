"""The Preferences dialog: edits the app's AppSettings (app.settings), saving only valid values."""
from __future__ import annotations

import os
import re
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
    QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QTabWidget, QToolButton,
    QVBoxLayout, QWidget,
)

from app.settings import AppSettings, hf_cache_dir
from app.voice_server import ServerTab
from engine.audio import devices
from engine.config import DEFAULT_LM, DEVICES, QUANTIZATIONS, ModelChoice, SamplingParams
from engine.errors import EngineError
from engine.verify.scoring import DEFAULT_ASR

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
LM_CHOICES = ("HKUSTAudio/Llasa-1B", "HKUSTAudio/Llasa-3B", "HKUSTAudio/Llasa-8B")


def _model_problem(value: str, what: str) -> str | None:
    """Why `value` is neither an existing folder nor a Hugging Face repo id, or None when it is fine."""
    if not value:
        return f"Choose the {what}: a Hugging Face repo id such as {DEFAULT_LM} or a local folder."
    folder = Path(value).expanduser()
    if folder.is_dir():
        return None
    looks_local = os.path.isabs(value) or value.startswith(("~", ".")) or "\\" in value or value.count("/") > 1
    if looks_local:
        return f"The {what} folder {folder} does not exist; pick the folder that holds config.json."
    if not _REPO_ID.match(value):
        return f"{value!r} is neither a Hugging Face repo id (owner/name) nor a folder; fix the {what}."
    return None


def _folder_problem(value: str, what: str, *, required: bool) -> str | None:
    if not value:
        return f"Choose a {what}." if required else None
    folder = Path(value).expanduser()
    if folder.exists() and not folder.is_dir():
        return f"The {what} {folder} is a file; choose a folder."
    existing = folder
    while not existing.exists() and existing != existing.parent:  # it may be created later
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return f"The {what} {folder} cannot be written; choose a folder you own."
    return None


class SettingsDialog(QDialog):
    """Preferences: General (models), Sampling (advanced part collapsible), Audio devices, Storage.

    OK saves to the AppSettings only when every field is valid; otherwise the problem is shown in the
    dialog (``error_text()``) and it stays open.
    """

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.setWindowTitle("Preferences")
        self.setMinimumWidth(520)
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Preferences sections")
        self.tabs.addTab(self._general_tab(), "General")
        self.tabs.addTab(self._sampling_tab(), "Sampling")
        self.tabs.addTab(self._audio_tab(), "Audio")
        self.tabs.addTab(self._storage_tab(), "Storage")
        self.server_tab = ServerTab()
        self.tabs.addTab(self.server_tab, "Server")
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setAccessibleName("Problem with these settings")
        self.error_label.hide()
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        self.buttons = buttons
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        self._load(settings)

    # --- construction -------------------------------------------------------------------------
    @staticmethod
    def _named(widget: QWidget, name: str, tip: str) -> QWidget:
        widget.setAccessibleName(name)
        widget.setToolTip(tip)
        return widget

    def _browse_row(self, edit: QLineEdit, title: str) -> QWidget:
        button = QPushButton("Browse…")
        button.setAccessibleName(f"Browse for {title.lower()}")

        def browse() -> None:
            folder = QFileDialog.getExistingDirectory(self, title, edit.text() or str(Path.home()))
            if folder:
                edit.setText(folder)

        button.clicked.connect(browse)
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(edit, 1)
        box.addWidget(button)
        return row

    def _general_tab(self) -> QWidget:
        self.lm_combo = self._named(QComboBox(), "Speech model", "Llasa: a Hugging Face repo id or a local folder")
        self.lm_combo.setEditable(True)
        self.lm_combo.addItems(LM_CHOICES)
        self.codec_edit = self._named(QLineEdit(), "Codec model", "X-Codec2: a Hugging Face repo id or a local folder")
        self.quant_combo = self._named(QComboBox(), "Quantization", "Weight precision: 4-bit uses least GPU memory")
        self.quant_combo.addItem("Automatic (4-bit on GPU, fp32 on CPU)", None)
        for q in QUANTIZATIONS:
            self.quant_combo.addItem(q, q)
        self.device_combo = self._named(QComboBox(), "Compute device", "Where the model runs")
        names = {"auto": "Automatic (GPU when present)", "cuda": "GPU (CUDA)", "cpu": "CPU"}
        for d in DEVICES:
            self.device_combo.addItem(names.get(d, d), d)
        lm_row = QWidget()
        box = QHBoxLayout(lm_row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.lm_combo, 1)
        browse = QPushButton("Local folder…")
        browse.setAccessibleName("Use a local model folder")
        browse.clicked.connect(self._browse_lm)
        box.addWidget(browse)
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("Speech model:", lm_row)
        form.addRow("Codec:", self._browse_row(self.codec_edit, "Codec folder"))
        form.addRow("Quantization:", self.quant_combo)
        form.addRow("Device:", self.device_combo)
        self.asr_edit = self._named(QLineEdit(), "Speech recognition model",
                                    "Whisper, for Auto-transcribe and quality mode: a repo id or a local folder")
        form.addRow("Speech recognition:", self._browse_row(self.asr_edit, "Whisper folder"))
        return page

    @Slot()
    def _browse_lm(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Speech model folder", str(Path.home()))
        if folder:
            self.lm_combo.setCurrentText(folder)

    def _sampling_tab(self) -> QWidget:
        self.temperature_spin = self._named(QDoubleSpinBox(), "Temperature", "Higher is livelier; 0 = same take")
        self.temperature_spin.setRange(0.0, 2.0)
        self.temperature_spin.setSingleStep(0.05)
        self.random_seed_check = self._named(QCheckBox("New random take each time"), "Random seed",
                                             "Off: use the seed below, so the same text gives the same take")
        self.seed_spin = self._named(QSpinBox(), "Seed", "Seed for reproducible takes")
        self.seed_spin.setRange(0, 2**31 - 1)
        self.random_seed_check.toggled.connect(lambda on: self.seed_spin.setEnabled(not on))
        self.top_p_spin = self._named(QDoubleSpinBox(), "Top p", "Nucleus sampling mass; 1 = off")
        self.top_p_spin.setRange(0.0, 1.0)
        self.top_p_spin.setSingleStep(0.05)
        self.top_k_spin = self._named(QSpinBox(), "Top k", "Keep only the k most likely tokens; 0 = off")
        self.top_k_spin.setRange(0, 65536)
        self.repetition_spin = self._named(QDoubleSpinBox(), "Repetition penalty", "Above 1 discourages repeats")
        self.repetition_spin.setRange(0.0, 3.0)
        self.repetition_spin.setSingleStep(0.05)
        self.advanced_toggle = self._named(QToolButton(), "Show advanced sampling", "Show or hide advanced settings")
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_box = QGroupBox()
        self.advanced_box.setAccessibleName("Advanced sampling")
        adv = QFormLayout(self.advanced_box)
        adv.addRow("Top p:", self.top_p_spin)
        adv.addRow("Top k:", self.top_k_spin)
        adv.addRow("Repetition penalty:", self.repetition_spin)
        self.advanced_box.setVisible(False)
        self.advanced_toggle.toggled.connect(self._show_advanced)
        page = QWidget()
        layout = QVBoxLayout(page)
        form = QFormLayout()
        form.addRow("Temperature:", self.temperature_spin)
        form.addRow("", self.random_seed_check)
        form.addRow("Seed:", self.seed_spin)
        layout.addLayout(form)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced_box)
        layout.addStretch(1)
        return page

    @Slot(bool)
    def _show_advanced(self, shown: bool) -> None:
        self.advanced_box.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def _audio_tab(self) -> QWidget:
        self.input_combo = self._named(QComboBox(), "Microphone", "Device used to record a voice")
        self.output_combo = self._named(QComboBox(), "Speakers", "Device used for playback")
        self.audio_reason_label = QLabel()
        self.audio_reason_label.setWordWrap(True)
        self.audio_reason_label.setAccessibleName("Audio status")
        reason = devices.audio_unavailable_reason()
        found: list = []
        if reason is None:
            try:
                found = devices.list_devices()
            except EngineError as e:
                reason = str(e)
        for combo in (self.input_combo, self.output_combo):
            combo.addItem("System default", None)
        for dev in found:
            if dev.max_inputs > 0:
                self.input_combo.addItem(dev.name + (" (default)" if dev.is_default_input else ""), dev.index)
            if dev.max_outputs > 0:
                self.output_combo.addItem(dev.name + (" (default)" if dev.is_default_output else ""), dev.index)
        if reason is not None:
            for combo in (self.input_combo, self.output_combo):
                combo.setEnabled(False)
                combo.setToolTip(f"Audio is unavailable: {reason}")
            self.audio_reason_label.setText(f"Audio is unavailable: {reason}")
        self.audio_reason = reason
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("Microphone:", self.input_combo)
        form.addRow("Speakers:", self.output_combo)
        form.addRow(self.audio_reason_label)
        return page

    def _storage_tab(self) -> QWidget:
        self.voices_edit = self._named(QLineEdit(), "Voices folder", "Where saved voices are kept")
        self.models_edit = self._named(QLineEdit(), "Models folder", "Where downloaded models are kept")
        self.models_edit.setPlaceholderText(f"Hugging Face cache ({hf_cache_dir()})")
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("Voices:", self._browse_row(self.voices_edit, "Voices folder"))
        form.addRow("Models:", self._browse_row(self.models_edit, "Models folder"))
        self.history_check = self._named(QCheckBox("Keep the take history between sessions"), "Keep take history",
                                         "Takes are kept (audio and list) in the app's data folder")
        form.addRow(self.history_check)
        self.theme_combo = self._named(QComboBox(), "Appearance", "Light or dark colours (applies at once)")
        for key, name in (("auto", "Follow the system"), ("light", "Light"), ("dark", "Dark")):
            self.theme_combo.addItem(name, key)
        form.addRow("Appearance:", self.theme_combo)
        return page

    # --- values -------------------------------------------------------------------------------
    @staticmethod
    def _select(combo: QComboBox, value: object) -> None:
        index = combo.findData(value)
        if index < 0 and value is not None:  # a device that is gone, or a custom value: keep it visible
            combo.addItem(str(value), value)
            index = combo.count() - 1
        combo.setCurrentIndex(max(index, 0))

    def _load(self, s: AppSettings) -> None:
        self.lm_combo.setCurrentText(s.lm)
        self.codec_edit.setText(s.codec)
        self._select(self.quant_combo, s.quantization)
        self._select(self.device_combo, s.device)
        self.asr_edit.setText(s.asr or DEFAULT_ASR)
        self.temperature_spin.setValue(s.temperature)
        self.top_p_spin.setValue(s.top_p)
        self.top_k_spin.setValue(s.top_k)
        self.repetition_spin.setValue(s.repetition_penalty)
        self.random_seed_check.setChecked(s.seed is None)
        self.seed_spin.setValue(s.seed or 0)
        self.seed_spin.setEnabled(s.seed is not None)
        self._select(self.input_combo, s.input_device)
        self._select(self.output_combo, s.output_device)
        self.voices_edit.setText(str(s.voices_folder))
        self.models_edit.setText("" if s.models_folder is None else str(s.models_folder))
        self.server_tab.load(s)
        self.history_check.setChecked(bool(s.keep_history))
        self._select(self.theme_combo, s.theme or "auto")

    @Slot()
    def restore_defaults(self) -> None:
        """Put the defaults in the fields (saved only on OK)."""
        self._load(AppSettings.defaults())

    def _values(self) -> dict:
        return {
            "lm": self.lm_combo.currentText().strip(),
            "codec": self.codec_edit.text().strip(),
            "quantization": self.quant_combo.currentData(),
            "device": self.device_combo.currentData(),
            "asr": self.asr_edit.text().strip() or DEFAULT_ASR,
            "temperature": self.temperature_spin.value(),
            "top_p": self.top_p_spin.value(),
            "top_k": self.top_k_spin.value(),
            "repetition_penalty": self.repetition_spin.value(),
            "seed": None if self.random_seed_check.isChecked() else self.seed_spin.value(),
            "input_device": self.input_combo.currentData(),
            "output_device": self.output_combo.currentData(),
            "voices_folder": self.voices_edit.text().strip(),
            "models_folder": self.models_edit.text().strip(),
            **self.server_tab.values(),
            "keep_history": self.history_check.isChecked(),
            "theme": self.theme_combo.currentData(),
        }

    def validate(self) -> str | None:
        """The first problem with the fields as a message the user can act on, or None."""
        v = self._values()
        problem = (
            _model_problem(v["lm"], "speech model")
            or _model_problem(v["codec"], "codec")
            or _model_problem(v["asr"], "speech recognition model")
            or _folder_problem(v["voices_folder"], "voices folder", required=True)
            or _folder_problem(v["models_folder"], "models folder", required=False)
        )
        if problem:
            return problem
        try:
            ModelChoice(lm=v["lm"], codec=v["codec"], quantization=v["quantization"], device=v["device"])
            SamplingParams(temperature=v["temperature"], top_p=v["top_p"], top_k=v["top_k"],
                           repetition_penalty=v["repetition_penalty"], seed=v["seed"])
        except EngineError as e:
            return str(e)
        return None

    def error_text(self) -> str:
        """The problem shown in the dialog, or '' when there is none."""
        return self.error_label.text()

    def accept(self) -> None:
        problem = self.validate()
        if problem:
            self.error_label.setText(problem)
            self.error_label.show()
            return
        s = self.settings
        v = self._values()
        theme_changed = (s.theme or "auto") != v["theme"]
        for key in ("lm", "codec", "quantization", "device", "asr", "temperature", "top_p", "top_k",
                    "repetition_penalty", "seed", "input_device", "output_device", "serve_voices", "serve_port",
                    "keep_history", "theme"):
            setattr(s, key, v[key])
        s.voices_folder = Path(v["voices_folder"]).expanduser()
        s.models_folder = Path(v["models_folder"]).expanduser() if v["models_folder"] else None
        s.sync()
        from PySide6.QtWidgets import QApplication

        from app.theme import apply_theme

        if theme_changed:
            apply_theme(QApplication.instance(), v["theme"])
        self.error_label.clear()
        self.error_label.hide()
        super().accept()
