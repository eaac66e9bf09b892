"""Model setup: pick the Llasa size and quantization, download (with consent) or use local folders.

The same dialog serves the first run (ModelsDialog(first_run=True)) and the Models menu. Downloads run
in a worker object on a QThread with real byte progress (app.model_download); cancelling keeps the
partial files, so downloading again resumes. When the hub is unreachable the dialog says so and offers
a local folder.
"""
from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt, QThread, Slot
from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QGroupBox, QHBoxLayout,
    QLabel, QProgressBar, QPushButton, QRadioButton, QVBoxLayout, QWidget,
)

from app.model_download import DownloadWorker, ModelDownload, human_bytes
from engine.models import downloads
from engine.config import ModelChoice
from engine.errors import EngineError
from engine.lm.gguf import estimated_size
from engine.models.resolve import check_codec_folder, check_lm_folder

QUANTIZATION_NOTES = {  # what each choice costs and gives (GPU memory for the 1B / 8B LM)
    None: "Automatic: 4bit on a CUDA GPU, fp32 on the CPU.",
    "4bit": "4bit: least memory (~1 GB for 1B, ~6 GB for 8B), slightly lower quality. CUDA only.",
    "8bit": "8bit: about half of bf16's memory, quality close to bf16, slower. CUDA only.",
    "bf16": "bf16: full quality on a modern GPU (~2.5 GB for 1B, ~16 GB for 8B).",
    "fp32": "fp32: full quality, twice bf16's memory; the choice for CPUs.",
}
_LOCAL = "local"  # key of the LM radio button for a local folder
BACKEND_LABELS = {"auto": "Automatic (llama.cpp without an NVIDIA GPU, if installed)", "torch": "PyTorch",
                  "llamacpp": "llama.cpp (fast on CPUs and Macs)"}
GGUF_LABELS = {"q8_0": "Q8_0 (default)", "q4_k_m": "Q4_K_M (fastest)", "bf16": "BF16 (exact)"}



class ModelsDialog(ModelDownload, QDialog):
    """Choose models; accepted means chosen_lm()/chosen_codec() are on disk (repo ids in the cache or folders)."""

    def __init__(
        self, parent: QWidget | None = None, *, first_run: bool = False, current: ModelChoice | None = None,
        last_folder: str = "", problem: str = "",
    ) -> None:
        super().__init__(parent)
        self.last_folder = last_folder  # where "Use a local folder…" starts: the last folder that loaded
        current = current or ModelChoice()
        self._entries = {e.key: e for e in downloads.CATALOG}
        self._codec_entry = self._entries.get("codec")
        self._local_lm: str | None = None
        self._local_codec: str | None = None
        self._thread: QThread | None = None
        self._worker: DownloadWorker | None = None
        self._cancel = threading.Event()
        self.setWindowTitle("Set up Llasa Studio" if first_run else "Models")
        self.setAccessibleName(self.windowTitle())
        self._build(first_run)
        self._select_current(current)
        if problem:
            self.status_label.setText(f"The current models could not be loaded: {problem}")
        self.refresh()

    # --- layout ---------------------------------------------------------------------------------
    def _build(self, first_run: bool) -> None:
        intro = QLabel(
            "Welcome to Llasa Studio. Pick a voice model to download once, or use folders you already have; "
            "after that everything works offline."
            if first_run else "Installed models work offline. Bigger models sound better and need more memory."
        )
        intro.setWordWrap(True)

        lm_box = QGroupBox("Voice model (Llasa LM)")
        lm_layout = QVBoxLayout(lm_box)
        self.lm_group = QButtonGroup(self)
        self.lm_buttons: dict[str, QRadioButton] = {}
        for key, entry in self._entries.items():
            if key == "codec":
                continue
            radio = QRadioButton()
            radio.setAccessibleName(entry.title)
            radio.setToolTip(entry.description)
            self.lm_buttons[key] = radio
        local = QRadioButton()
        local.setAccessibleName("Local LM folder")
        local.setVisible(False)
        self.lm_buttons[_LOCAL] = local
        for radio in self.lm_buttons.values():
            self.lm_group.addButton(radio)
            lm_layout.addWidget(radio)
            radio.toggled.connect(self.refresh)
        self.codec_label = QLabel()
        self.codec_label.setWordWrap(True)
        self.codec_label.setAccessibleName("Codec")
        lm_layout.addWidget(self.codec_label)
        self.local_button = QPushButton("Use a local folder…")
        self.local_button.setAccessibleName("Use a local folder")
        self.local_button.setToolTip("Use a Llasa LM or X-Codec2 folder already on this computer")
        self.local_button.clicked.connect(self.choose_local_folder)
        lm_layout.addWidget(self.local_button, 0, Qt.AlignmentFlag.AlignLeft)

        verify_box = QGroupBox("Checking models (optional)")
        verify_layout = QVBoxLayout(verify_box)
        note = QLabel("Auto-transcribe and quality mode use them; tick the ones to download with Download.")
        note.setWordWrap(True)
        verify_layout.addWidget(note)
        self.verifier_boxes: dict[str, QCheckBox] = {}
        for entry in downloads.VERIFIER_CATALOG:
            box = QCheckBox()
            box.setAccessibleName(entry.title)
            box.setToolTip(entry.description)
            box.toggled.connect(self.refresh)
            self.verifier_boxes[entry.key] = box
            verify_layout.addWidget(box)

        self.quant_combo = QComboBox()
        self.quant_combo.setAccessibleName("Quantization")
        self.quant_combo.setToolTip("Trade memory for quality")
        for q in QUANTIZATION_NOTES:
            self.quant_combo.addItem("Automatic" if q is None else q, q)
        self.quant_note = QLabel()
        self.quant_note.setWordWrap(True)
        self.quant_combo.currentIndexChanged.connect(
            lambda: self.quant_note.setText(QUANTIZATION_NOTES[self.quant_combo.currentData()])
        )
        quant_row = QHBoxLayout()
        quant_row.addWidget(QLabel("Quantization:"))
        quant_row.addWidget(self.quant_combo)
        quant_row.addWidget(self.quant_note, 1)

        self.backend_combo = QComboBox()
        self.backend_combo.setAccessibleName("Engine")
        self.backend_combo.setToolTip("What runs the voice model; llama.cpp needs the llamacpp extra")
        for key, label in BACKEND_LABELS.items():
            self.backend_combo.addItem(label, key)
        self.gguf_combo = QComboBox()
        self.gguf_combo.setAccessibleName("llama.cpp precision")
        self.gguf_combo.setToolTip("llama.cpp weights, converted once from the model (never downloaded)")
        for key in GGUF_LABELS:
            self.gguf_combo.addItem(GGUF_LABELS[key], key)
        engine_row = QHBoxLayout()
        engine_row.addWidget(QLabel("Engine:"))
        engine_row.addWidget(self.backend_combo)
        engine_row.addWidget(QLabel("llama.cpp:"))
        engine_row.addWidget(self.gguf_combo, 1)

        self.licence_label = QLabel(downloads.LICENCE_NOTICE)
        self.licence_label.setWordWrap(True)
        self.licence_label.setAccessibleName("Licence")
        self.consent_label = QLabel(downloads.CONSENT_NOTICE)
        self.consent_label.setWordWrap(True)
        self.consent_box = QCheckBox("I have read this and agree")
        self.consent_box.setAccessibleName("Consent")
        self.consent_box.setAccessibleDescription(downloads.CONSENT_NOTICE)
        self.consent_box.setToolTip("Required before downloading")
        self.consent_box.toggled.connect(self.refresh)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setAccessibleName("Download progress")
        self.progress_bar.hide()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setAccessibleName("Download status")
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.download_button = QPushButton("Download")
        self.download_button.setAccessibleName("Download")
        self.download_button.setToolTip("Download the selected model and the codec (resumes a cancelled download)")
        self.download_button.clicked.connect(self.start_download)
        self.cancel_download_button = QPushButton("Cancel download")
        self.cancel_download_button.setAccessibleName("Cancel download")
        self.cancel_download_button.clicked.connect(self.cancel_download)
        self.cancel_download_button.hide()
        dl_row = QHBoxLayout()
        dl_row.addWidget(self.download_button)
        dl_row.addWidget(self.cancel_download_button)
        dl_row.addWidget(self.progress_bar, 1)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Start" if first_run else "Use these models")
        self.ok_button.setAccessibleName(self.ok_button.text())
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        for w in (intro, lm_box):
            layout.addWidget(w)
        layout.addLayout(quant_row)
        layout.addWidget(verify_box)
        layout.addLayout(engine_row)
        for w in (self.licence_label, self.consent_label, self.consent_box):
            layout.addWidget(w)
        layout.addLayout(dl_row)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(560)

    def _select_current(self, current: ModelChoice) -> None:
        match = [k for k, e in self._entries.items() if e.repo_id == current.lm]
        if match and match[0] in self.lm_buttons:
            self.lm_buttons[match[0]].setChecked(True)
        elif Path(current.lm).expanduser().is_dir():
            self._set_local_lm(str(Path(current.lm).expanduser()))
        else:
            next(iter(self.lm_buttons.values())).setChecked(True)
        codec_repo = self._codec_entry.repo_id if self._codec_entry else None
        if current.codec != codec_repo and Path(current.codec).expanduser().is_dir():
            self._local_codec = str(Path(current.codec).expanduser())
        self.quant_combo.setCurrentIndex(max(0, self.quant_combo.findData(current.quantization)))
        self.quant_note.setText(QUANTIZATION_NOTES[self.quant_combo.currentData()])
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(current.backend)))
        self.gguf_combo.setCurrentIndex(max(0, self.gguf_combo.findData(current.gguf_precision)))

    # --- state ----------------------------------------------------------------------------------
    def _lm_key(self) -> str | None:
        for key, radio in self.lm_buttons.items():
            if radio.isChecked():
                return key
        return None

    def chosen_lm(self) -> str:
        """Repo id (in the local cache once downloaded) or local folder of the Llasa LM."""
        key = self._lm_key()
        if key == _LOCAL or key is None:
            return self._local_lm or ""
        return self._entries[key].repo_id

    def chosen_codec(self) -> str:
        """Repo id or local folder of X-Codec2."""
        if self._local_codec:
            return self._local_codec
        return self._codec_entry.repo_id if self._codec_entry else ""

    def chosen_quantization(self) -> str | None:
        """One of engine.config.QUANTIZATIONS, or None for automatic (4bit on CUDA, fp32 on CPU)."""
        return self.quant_combo.currentData()

    def chosen_backend(self) -> str:
        """One of engine.config.BACKENDS."""
        return self.backend_combo.currentData()

    def chosen_gguf_precision(self) -> str:
        """The llama.cpp weights: "q8_0", "q4_k_m" or "bf16"."""
        return self.gguf_combo.currentData()

    def chosen(self) -> ModelChoice:
        return ModelChoice(lm=self.chosen_lm(), codec=self.chosen_codec(), quantization=self.chosen_quantization(),
                           backend=self.chosen_backend(), gguf_precision=self.chosen_gguf_precision())

    def _lm_parameters(self) -> int | None:
        """Approximate weight count of the chosen LM (bf16 safetensors: 2 bytes per weight), None if unknown."""
        key = self._lm_key()
        if key not in (None, _LOCAL):
            return self._entries[key].download_bytes // 2
        if self._local_lm:
            return sum(p.stat().st_size for p in Path(self._local_lm).glob("*.safetensors")) // 2 or None
        return None

    def _update_gguf_sizes(self) -> None:
        """Show each llama.cpp precision with the size its converted file will have for the chosen LM."""
        parameters = self._lm_parameters()
        for i, key in enumerate(GGUF_LABELS):
            size = f" — about {human_bytes(estimated_size(parameters, key))}" if parameters else ""
            self.gguf_combo.setItemText(i, GGUF_LABELS[key] + size)

    def _missing(self) -> list[tuple[str, int]]:
        """(repo id, bytes) of the chosen models that still need downloading."""
        wanted = [e for e in downloads.VERIFIER_CATALOG
                  if self.verifier_boxes[e.key].isChecked() and self.verifier_boxes[e.key].isEnabled()]
        key = self._lm_key()
        if key not in (None, _LOCAL):
            wanted.append(self._entries[key])
        if not self._local_codec and self._codec_entry:
            wanted.append(self._codec_entry)
        return [(e.repo_id, e.download_bytes) for e in wanted if downloads.installed_path(e.repo_id) is None]

    def _missing_models(self) -> list[tuple[str, int]]:
        """What Use/Start needs: the chosen LM and codec (checking models are optional)."""
        optional = {e.repo_id for e in downloads.VERIFIER_CATALOG}
        return [m for m in self._missing() if m[0] not in optional]

    @Slot()
    def refresh(self) -> None:
        """Update the installed status of every entry and the enabled buttons."""
        if not hasattr(self, "ok_button"):
            return
        for key, radio in self.lm_buttons.items():
            if key == _LOCAL:
                continue
            radio.setText(self._describe(self._entries[key]))
        if self._local_codec:
            self.codec_label.setText(f"Codec: local folder {self._local_codec}")
        elif self._codec_entry:
            self.codec_label.setText("Codec: " + self._describe(self._codec_entry))
        busy = self.is_downloading()
        for entry in downloads.VERIFIER_CATALOG:
            box, path = self.verifier_boxes[entry.key], downloads.installed_path(entry.repo_id)
            box.setText(self._describe(entry))
            if not busy:
                box.setEnabled(path is None)  # installed: nothing to download
        missing = self._missing()
        self.download_button.setEnabled(bool(missing) and self.consent_box.isChecked() and not busy)
        self.download_button.setToolTip(
            "Tick the consent box first" if missing and not self.consent_box.isChecked()
            else "Download the selected model and the codec (resumes a cancelled download)"
        )
        self.ok_button.setEnabled(not self._missing_models() and bool(self.chosen_lm()) and not busy)
        self._update_gguf_sizes()
        for w in (*self.lm_buttons.values(), self.local_button, self.quant_combo, self.backend_combo, self.gguf_combo,
                  self.consent_box):
            w.setEnabled(not busy)
        if busy:
            for box in self.verifier_boxes.values():
                box.setEnabled(False)

    @staticmethod
    def _describe(entry) -> str:
        path = downloads.installed_path(entry.repo_id)
        where = f"installed at {path}" if path else "not downloaded"
        return f"{entry.title} — {human_bytes(entry.download_bytes)} — {where}"

    # --- local folders --------------------------------------------------------------------------
    @Slot()
    def choose_local_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a Llasa LM or X-Codec2 folder", self.last_folder)
        if folder:
            self.use_local_folder(folder)

    @Slot(str)
    def use_local_folder(self, folder: str) -> bool:
        """Use `folder` as the LM or the codec, whichever it is, or both when it holds lm/ and codec/;
        shows why when it is none of these."""
        path = Path(folder)
        if (path / "lm").is_dir() and (path / "codec").is_dir():
            try:
                check_lm_folder(path / "lm")
                check_codec_folder(path / "codec")
            except EngineError as error:
                self.status_label.setText(f"That folder cannot be used: {error}")
                return False
            self._set_local_lm(str(path / "lm"))
            self._local_codec = str(path / "codec")
            self.status_label.setText(f"Using the Llasa LM in {path / 'lm'} and the codec in {path / 'codec'}.")
            self.refresh()
            return True
        try:
            check_lm_folder(path)
        except EngineError as lm_error:
            try:
                check_codec_folder(path)
            except EngineError as codec_error:
                is_codec = "is an X-Codec2 folder" in str(lm_error)
                text = str(codec_error) if is_codec else str(lm_error)
                self.status_label.setText(f"That folder cannot be used: {text}")
                return False
            self._local_codec = str(path)
            self.status_label.setText(f"Using the X-Codec2 codec in {path}.")
        else:
            self._set_local_lm(str(path))
            self.status_label.setText(f"Using the Llasa LM in {path}.")
        self.refresh()
        return True

    def _set_local_lm(self, folder: str) -> None:
        self._local_lm = folder
        radio = self.lm_buttons[_LOCAL]
        radio.setText(f"Local folder: {folder}")
        radio.setVisible(True)
        radio.setChecked(True)

    # --- closing --------------------------------------------------------------------------------
    def reject(self) -> None:  # Esc / Cancel / closing the window stop a running download
        self._stop_download()
        super().reject()

    def accept(self) -> None:
        if self.is_downloading() or not self.ok_button.isEnabled():
            return
        super().accept()
