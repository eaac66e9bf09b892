"""The model catalog and downloads from the Hugging Face hub, with byte progress and cancel.

Models go into the ordinary Hugging Face cache (so engine.models.resolve.resolve_model and `hf download` see
the same copies). Only safetensors weights, config and tokenizer files are fetched, never pickles.
Files are fetched one by one and config.json last, so a folder with config.json is complete. A
cancelled or failed download keeps the files it finished; the next download skips them
(huggingface_hub 2.x discards a half-fetched file, so resuming is per file). No torch here.
"""
from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from engine.errors import CancelledError, HubUnreachableError, ModelNotFoundError, OutputFileError

ALLOW_PATTERNS = ("*.safetensors", "*.json", "tokenizer.model")  # top-level files only; never pickles
WEIGHTS_ONLY_PICKLE = "pytorch_model.bin"  # fetched only for entries with pickle_weights (loaded weights-only)
_PROGRESS_CHUNK = 1 << 20  # bytes per read, so progress and cancel react about every MiB
_TIMEOUT_S = 15.0  # listing a repo


@dataclass(frozen=True)
class CatalogEntry:
    """A model the app offers to download."""

    key: str  # "1B", "3B", "8B", "codec"; verifiers: "asr", "asr-large", "speaker"
    repo_id: str
    title: str
    download_bytes: int  # approximate: safetensors + config + tokenizer files, from the hub's file list
    description: str
    pickle_weights: bool = False  # the repo has only pytorch_model.bin: fetch it (loaded weights-only, never run)


# Sizes: the repos' file listings on huggingface.co (decimal GB, summed over the files we fetch).
CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "1B", "HKUSTAudio/Llasa-1B", "Llasa 1B", 2_782_000_000,
        "Fastest; fits small GPUs (about 2 GB of GPU memory in 4-bit). Good quality for most voices.",
    ),
    CatalogEntry(
        "3B", "HKUSTAudio/Llasa-3B", "Llasa 3B", 8_061_000_000,
        "Better prosody and cloning; about 3 GB of GPU memory in 4-bit.",
    ),
    CatalogEntry(
        "8B", "HKUSTAudio/Llasa-8B", "Llasa 8B", 17_181_000_000,
        "Best quality, slowest; about 6 GB of GPU memory in 4-bit.",
    ),
    CatalogEntry(
        "codec", "HKUSTAudio/xcodec2", "X-Codec2 speech codec", 3_290_000_000,
        "Turns speech into codes and back; needed by every Llasa model.",
    ),
)

# Verifiers for verifier-picked takes (engine.verify.scoring). Sizes are the files we fetch, from the hub file
# listings: whisper-large-v3-turbo's model.safetensors 1.62 GB + 4.1 MB of json (tokenizer.json 2.71 MB,
# vocab.json 1.04 MB, tokenizer_config.json 283 kB, ...); whisper-small's model.safetensors 967 MB + about
# 3.9 MB of json (estimated from memory of its listing, not re-checked). microsoft/wavlm-base-plus-sv has
# only a pickle (pytorch_model.bin, 405 MB): ALLOW_PATTERNS never fetches pickles, so the app does not
# fetch it unless its entry says pickle_weights; engine.verify.scoring loads that one pickle weights-only
# (torch.load(weights_only=True): tensors only, no code runs; see engine.verify.scoring.WEIGHTS_ONLY_PICKLE).
VERIFIER_CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        "asr", "openai/whisper-small", "Whisper small (speech recognition)", 971_000_000,
        "Checks that each take says the text (word/character error rate); also transcribes reference clips.",
    ),
    CatalogEntry(
        "asr-large", "openai/whisper-large-v3-turbo", "Whisper large-v3-turbo (speech recognition)", 1_624_000_000,
        "More accurate checking of takes, on hard text and Chinese; about 1.6 GB of GPU memory in fp16.",
    ),
    CatalogEntry(
        "speaker", "microsoft/wavlm-base-plus-sv", "WavLM speaker verification", 405_000_000,
        "Scores how close each take's voice is to the reference clip (x-vector cosine similarity).",
        pickle_weights=True,
    ),
)

LICENCE_NOTICE = (
    "Llasa and X-Codec2 weights are licensed CC-BY-NC-4.0: non-commercial use only, with attribution "
    "to HKUST Audio. Commercial use needs a separate licence from the authors."
)
CONSENT_NOTICE = (
    "Clone only voices you have permission to use: your own, or a speaker who agreed. Do not use cloned "
    "voices to deceive, impersonate or harass anyone."
)


def catalog_entry(key_or_repo: str) -> CatalogEntry | None:
    """The catalog entry with this key ("1B") or repo id, or None."""
    return next((e for e in CATALOG + VERIFIER_CATALOG if key_or_repo in (e.key, e.repo_id)), None)


def _is_complete(folder: Path, pickle_weights: bool = False) -> bool:
    """True when the folder has config.json, which a download writes last, and all its weights."""
    if not (folder / "config.json").is_file():
        return False
    if pickle_weights and (folder / WEIGHTS_ONLY_PICKLE).is_file():
        return True
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return False
        return all((folder / shard).is_file() for shard in shards)
    return any(folder.glob("*.safetensors"))


def installed_path(repo_id: str, *, cache_dir: Path | None = None) -> Path | None:
    """The complete local copy of `repo_id` in the Hugging Face cache, or None. Never goes online."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=cache_dir))
    except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError; bad ids are ValueErrors
        return None
    entry = catalog_entry(repo_id)
    return folder if _is_complete(folder, bool(entry and entry.pickle_weights)) else None


def _unreachable(host: str, reason: str) -> HubUnreachableError:
    return HubUnreachableError(
        f"Cannot reach {host} ({reason}): check the connection or proxy, or use 'Use a local folder…'."
    )


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection/timeout/proxy error classes of whichever HTTP client this huggingface_hub uses."""
    names = {"httpx2": ("TransportError",), "httpx": ("TransportError",), "requests": ("ConnectionError", "Timeout")}
    loaded = ((sys.modules.get(module), classes) for module, classes in names.items())
    return tuple(getattr(m, c) for m, classes in loaded if m is not None for c in classes if hasattr(m, c))


def _files_to_fetch(api, repo_id: str) -> list[tuple[str, int]]:
    """(name, bytes) of the top-level files matching ALLOW_PATTERNS (plus WEIGHTS_ONLY_PICKLE for a catalog
    entry with pickle_weights), config.json last."""
    from huggingface_hub.utils import filter_repo_objects

    info = api.model_info(repo_id, files_metadata=True, timeout=_TIMEOUT_S)
    siblings = {s.rfilename: int(s.size or 0) for s in info.siblings or () if "/" not in s.rfilename}
    entry = catalog_entry(repo_id)
    patterns = list(ALLOW_PATTERNS) + ([WEIGHTS_ONLY_PICKLE] if entry and entry.pickle_weights else [])
    names = sorted(filter_repo_objects(siblings, allow_patterns=patterns))
    names.sort(key=lambda name: name == "config.json")  # stable: config.json moves to the end
    if "config.json" not in names:
        raise ModelNotFoundError(f"{repo_id} has no config.json on the hub: it is not a model Llasa Studio can use.")
    return [(name, siblings[name]) for name in names]


def download(
    repo_id: str,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Download `repo_id` into the Hugging Face cache and return its snapshot folder.

    on_progress(done_bytes, total_bytes) is called from this thread about every MiB. Files already
    in the cache are skipped, so calling again after a cancel or failure resumes. `endpoint` and
    `cache_dir` default to the hub's (HF_ENDPOINT, HF_HUB_CACHE). Raises CancelledError when `cancel`
    is set, HubUnreachableError when the hub cannot be reached, ModelNotFoundError for an unknown
    repo, OutputFileError when the cache cannot be written.
    """
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    # Plain HTTP in 1 MiB reads, so that progress and cancel run in our hook (Xet transfers run in
    # native threads that a Python hook cannot stop).
    constants.HF_HUB_DISABLE_XET = True
    constants.DOWNLOAD_CHUNK_SIZE = _PROGRESS_CHUNK
    cancel = cancel or threading.Event()
    report = on_progress or (lambda done, total: None)
    host = urlparse(endpoint or constants.ENDPOINT).netloc or "huggingface.co"
    try:
        files = _files_to_fetch(HfApi(endpoint=endpoint), repo_id)
        total = sum(size for _, size in files)
        done = 0
        report(done, total)
        for name, size in files:
            if cancel.is_set():
                raise CancelledError("Download cancelled.")
            base = done

            class _Hook:
                """tqdm stand-in the hub calls with each chunk's size: reports bytes, checks cancel."""

                def __init__(self, *args, initial: int = 0, **kwargs) -> None:
                    self.n = initial

                def __enter__(self) -> "_Hook":
                    return self

                def __exit__(self, *exc) -> None:
                    pass

                def close(self) -> None:
                    pass

                def update(self, n: int = 1) -> None:
                    self.n += n
                    report(base + min(max(self.n, 0), size), total)
                    if cancel.is_set():
                        raise CancelledError("Download cancelled.")

            path = hf_hub_download(repo_id, name, endpoint=endpoint, cache_dir=cache_dir, tqdm_class=_Hook)
            done += size
            report(done, total)
        return Path(path).parent
    except OfflineModeIsEnabled:
        raise _unreachable(host, "offline mode is on: HF_HUB_OFFLINE is set") from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"{repo_id} was not found on {host}: check the model name.") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise _unreachable(host, f"the server answered HTTP {status}") from None
    except _transport_errors() as error:
        raise _unreachable(host, str(error) or type(error).__name__) from None
    except FileNotFoundError as error:  # LocalEntryNotFoundError: the file's metadata request failed
        cause = error.__cause__ or error.__context__
        raise _unreachable(host, str(cause or error).splitlines()[0]) from None
    except OSError as error:
        if error.errno is None:  # the hub's own OSErrors, e.g. a size mismatch after a broken transfer
            raise _unreachable(host, str(error).splitlines()[0]) from None
        folder = cache_dir or constants.HF_HUB_CACHE
        raise OutputFileError(f"Cannot write the download to {folder}: {error.strerror}.") from None
