"""User preferences: a typed wrapper over QSettings, and the per-user folders the app uses.

The Preferences dialog that edits them is app.settings_dialog.SettingsDialog.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from engine.config import DEFAULT_CODEC, DEFAULT_LM, ModelChoice, SamplingParams
from engine.verify.scoring import DEFAULT_ASR, DEFAULT_SPEAKER

_DEFAULT_SAMPLING = SamplingParams()


def app_data_dir() -> Path:
    """Per-user data folder (QStandardPaths AppDataLocation); holds voices/ and logs/."""
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


def documents_dir() -> Path:
    """The user's Documents folder (home when the platform has none): where file dialogs start."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(folder) if folder and Path(folder).is_dir() else Path.home()


def logs_folder() -> Path:
    """Where the app writes its log files."""
    return app_data_dir() / "logs"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, where downloaded models live unless the user picks a folder."""
    from huggingface_hub import constants  # no torch; imported late to keep startup light

    return Path(constants.HF_HUB_CACHE)


class _Setting:
    """One typed QSettings key; None is stored as an empty string."""

    def __init__(self, key: str, kind: type, default: object) -> None:
        self.key, self.kind, self.default = key, kind, default

    def __get__(self, obj: "AppSettings | None", owner: type) -> object:
        if obj is None:
            return self
        raw = obj.qsettings.value(self.key)
        if raw is None:
            return self.default() if callable(self.default) else self.default
        if raw == "":
            return None
        try:
            if self.kind is bool:
                return raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1", "yes")
            return self.kind(raw)
        except (TypeError, ValueError):  # a hand-edited file: fall back to the default
            return self.default() if callable(self.default) else self.default

    def __set__(self, obj: "AppSettings", value: object) -> None:
        obj.qsettings.setValue(self.key, "" if value is None else (str(value) if isinstance(value, Path) else value))


class _EmptyStore:
    """Stands in for QSettings where every key is unset."""

    def value(self, key: str) -> None:
        return None

    def setValue(self, key: str, value: object) -> None:
        raise TypeError("AppSettings.defaults() is read-only")

    def sync(self) -> None:
        pass


class AppSettings:
    """Typed access to the app's preferences; every value has a default (the engine's, for sampling).

    Pass a QSettings (e.g. QSettings(path, QSettings.Format.IniFormat) in tests); the default is the
    per-user native store for the application's organisation/name.
    """

    lm = _Setting("model/lm", str, DEFAULT_LM)  # Hugging Face repo id or local folder
    codec = _Setting("model/codec", str, DEFAULT_CODEC)
    quantization = _Setting("model/quantization", str, None)  # None = auto (4bit on CUDA, fp32 on CPU)
    device = _Setting("model/device", str, "auto")
    backend = _Setting("model/backend", str, "auto")  # torch | llamacpp | auto (llama.cpp without CUDA, if installed)
    gguf_precision = _Setting("model/gguf_precision", str, "q8_0")  # llama.cpp weights: q8_0 | q4_k_m | bf16
    asr = _Setting("model/asr", str, DEFAULT_ASR)  # Whisper (auto-transcribe, quality mode): repo id or folder
    speaker = _Setting("model/speaker", str, DEFAULT_SPEAKER)  # WavLM x-vector (quality mode), if on disk
    temperature = _Setting("sampling/temperature", float, _DEFAULT_SAMPLING.temperature)
    top_p = _Setting("sampling/top_p", float, _DEFAULT_SAMPLING.top_p)
    top_k = _Setting("sampling/top_k", int, _DEFAULT_SAMPLING.top_k)
    repetition_penalty = _Setting("sampling/repetition_penalty", float, _DEFAULT_SAMPLING.repetition_penalty)
    seed = _Setting("sampling/seed", int, _DEFAULT_SAMPLING.seed)  # None = a fresh random seed per take
    input_device = _Setting("audio/input_device", int, None)  # PortAudio index; None = system default
    output_device = _Setting("audio/output_device", int, None)
    voices_folder = _Setting("storage/voices_folder", Path, lambda: app_data_dir() / "voices")
    models_folder = _Setting("storage/models_folder", Path, None)  # None = the Hugging Face cache
    serve_voices = _Setting("server/enabled", bool, False)  # run the speech API (app.voice_server) beside the app
    serve_port = _Setting("server/port", int, 8808)  # its TCP port on 127.0.0.1
    keep_history = _Setting("storage/keep_history", bool, True)  # keep the take history across sessions
    last_models_folder = _Setting("model/last_folder", str, None)  # last local model folder that loaded
    theme = _Setting("ui/theme", str, "auto")  # "auto" (follow the system), "light" or "dark"

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.qsettings = qsettings if qsettings is not None else QSettings()

    @classmethod
    def defaults(cls) -> "AppSettings":
        """Read-only view of the default values (backed by an empty store)."""
        return cls(_EmptyStore())  # type: ignore[arg-type]

    def history_folder(self) -> Path:
        """Where the take history lives: next to the voice library (app data folder by default)."""
        return Path(self.voices_folder).parent / "history"

    def to_model_choice(self) -> ModelChoice:
        """The models to load, as the engine's config (SettingsError when a stored value is invalid)."""
        return ModelChoice(lm=self.lm, codec=self.codec, quantization=self.quantization, device=self.device,
                           backend=self.backend, gguf_precision=self.gguf_precision)

    def to_sampling_params(self) -> SamplingParams:
        """Sampling settings as the engine's config (SettingsError when a stored value is invalid)."""
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            repetition_penalty=self.repetition_penalty, seed=self.seed,
        )

    def sync(self) -> None:
        """Write pending changes to disk now."""
        self.qsettings.sync()
