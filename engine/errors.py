"""Errors the engine raises on purpose: each message tells the user what went wrong and what to do.

The CLI prints ``str(error)`` on one line and exits with code 2; the GUI shows it in a dialog.
Anything that is not an ``EngineError`` is a bug and is logged with its traceback.
"""
import contextlib
import sys
from collections.abc import Iterator


class EngineError(Exception):
    """Base class: an expected failure with a message a user can act on."""


class UnsupportedAudioError(EngineError):
    """An audio file is missing, unreadable, corrupt or empty."""


class ReferenceAudioError(EngineError):
    """A reference clip was read but cannot be used (silent, too short)."""


class InputTextError(EngineError):
    """The text to speak is empty or its file cannot be read."""


class TextTooLongError(EngineError):
    """Reference + text do not fit in the model's context window."""


class ModelNotFoundError(EngineError):
    """A model folder or Hugging Face repo id cannot be found locally."""


class ModelFormatError(EngineError):
    """A model folder is incomplete, unsafe (pickle) or of the wrong kind."""


class DeviceError(EngineError):
    """The requested device or quantization is not available on this machine."""


class CancelledError(EngineError):
    """The user cancelled a long operation."""


class SettingsError(EngineError, ValueError):
    """A setting is out of range or not one of the allowed values."""


class OutputFileError(EngineError):
    """An output file cannot be written where the user asked."""


class ExportError(EngineError):
    """An audiobook export cannot be made (bad format or cover, encoder failure)."""


class AudioDeviceError(EngineError):
    """No usable audio input/output (PortAudio missing, no device, device busy)."""


class HubUnreachableError(EngineError):
    """The Hugging Face hub cannot be reached to download a model."""


class BookImportError(EngineError):
    """A book file cannot be imported: unsupported format, corrupt or empty."""


class DrmProtectedError(BookImportError):
    """A book file is encrypted (DRM) and cannot be read."""


class ProjectError(EngineError):
    """A narration project folder is missing, damaged, or not the project the command expects."""


class NoSpeechError(EngineError):
    """The model ended a take without any speech (a failed take: another seed usually works)."""
class OutOfMemoryError(EngineError):
    """The model or the text does not fit in the GPU's (or the computer's) memory."""


OUT_OF_MEMORY_ADVICE = ("choose a smaller model, 4-bit weights (--quant 4bit on a GPU), a shorter text, "
                        "or close other apps that use memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for torch.OutOfMemoryError (CUDA), MemoryError and the CPU allocator's "can't allocate" error.

    Recognised by type name and message so this module needs no torch import.
    """
    if isinstance(error, (MemoryError, OutOfMemoryError)) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("DefaultCPUAllocator: can't allocate" in text
                                                or "CUDA out of memory" in text or "MPS backend out of memory" in text)


def out_of_memory_error(error: BaseException, doing: str) -> OutOfMemoryError:
    """The user-facing error for an out-of-memory `error` raised while `doing` (e.g. "loading the models").

    Also returns the GPU's cached blocks to the driver, so the next job (a smaller one) can run.
    """
    if isinstance(error, OutOfMemoryError):
        return error
    torch = sys.modules.get("torch")
    gpu = type(error).__name__ == "OutOfMemoryError" or "CUDA" in str(error) or "MPS" in str(error)
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    where = "the GPU's" if gpu else "the computer's"
    return OutOfMemoryError(f"Out of memory ({where}) while {doing}: {OUT_OF_MEMORY_ADVICE}.")


@contextlib.contextmanager
def out_of_memory_as_error(doing: str) -> Iterator[None]:
    """Turn an out-of-memory failure inside the block into OutOfMemoryError (one line, with advice)."""
    try:
        yield
    except Exception as error:  # MemoryError, torch.OutOfMemoryError, RuntimeError("DefaultCPUAllocator ...")
        if not is_out_of_memory(error):
            raise
        raise out_of_memory_error(error, doing) from error
