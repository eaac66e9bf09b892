"""Downloads through huggingface_hub against a tiny hub served on 127.0.0.1 (nothing reaches the internet).

The server implements the three endpoints the hub client calls: model info with file sizes, HEAD and
GET (with Range) of /<repo>/resolve/<rev>/<file>.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.models.downloads import (
    CATALOG, CONSENT_NOTICE, LICENCE_NOTICE, catalog_entry, download, installed_path,
)
from engine.errors import CancelledError, HubUnreachableError, ModelNotFoundError

REPO = "tiny-org/tiny-llasa"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
MIB = 1 << 20
FILES = {
    "model.safetensors": bytes(range(256)) * (3 * MIB // 256),  # content is opaque to the download
    "tokenizer.json": b'{"x": "' + b"t" * (2 * MIB) + b'"}',
    "config.json": json.dumps({"model_type": "llama"}).encode(),
    "pytorch_model.bin": b"pickle - must never be fetched",
    "README.md": b"# tiny",
    "sub/extra.json": b"{}",
}
WANTED = ("model.safetensors", "tokenizer.json", "config.json")


class _Hub(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send_file(self, head: bool) -> None:
        match = re.fullmatch(rf"/{REPO}/resolve/([^/]+)/(.+)", self.path)
        if not match or match[2] not in FILES:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = FILES[match[2]]
        start = 0
        ranged = self.headers.get("Range")
        if ranged and not head:
            start = int(re.fullmatch(r"bytes=(\d+)-", ranged)[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not head:
            for i in range(start, len(data), 256 * 1024):
                self.wfile.write(data[i : i + 256 * 1024])

    def do_HEAD(self) -> None:
        self.requests.append(("HEAD", self.path, None))
        self._send_file(head=True)

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, self.headers.get("Range")))
        if self.path.startswith("/api/models/"):
            repo = self.path.split("?")[0][len("/api/models/") :].split("/revision/")[0]
            if repo != REPO:
                body = b'{"error": "Repository not found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
            else:
                siblings = [{"rfilename": name, "size": len(data)} for name, data in FILES.items()]
                body = json.dumps({"id": REPO, "sha": COMMIT, "siblings": siblings}).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._send_file(head=False)


@pytest.fixture
def hub():
    _Hub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fetched(method: str = "GET") -> list[str]:
    return [path.rsplit("/", 1)[-1] for m, path, _ in _Hub.requests if m == method and "/resolve/" in path]


def test_download_fetches_only_safe_files_with_byte_progress(hub, tmp_path):
    seen: list[tuple[int, int]] = []
    folder = download(REPO, on_progress=lambda d, t: seen.append((d, t)), endpoint=hub, cache_dir=tmp_path)
    total = sum(len(FILES[name]) for name in WANTED)
    assert sorted(p.name for p in folder.iterdir()) == sorted(WANTED)
    for name in WANTED:
        assert (folder / name).read_bytes() == FILES[name]
    assert _fetched() == list(WANTED)  # config.json last; no pickle, README or subfolder
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert all(t == total for _, t in seen)
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))
    assert len(seen) >= 6  # about one report per MiB, not one per file
    assert installed_path(REPO, cache_dir=tmp_path) == folder


def test_cancel_stops_mid_file_and_the_next_call_resumes(hub, tmp_path):
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done > len(FILES["model.safetensors"]):  # inside tokenizer.json
            cancel.set()

    with pytest.raises(CancelledError):
        download(REPO, on_progress=progress, cancel=cancel, endpoint=hub, cache_dir=tmp_path)
    assert seen[-1] < len(FILES["model.safetensors"]) + len(FILES["tokenizer.json"])
    assert installed_path(REPO, cache_dir=tmp_path) is None  # partial copy is not "installed"
    assert not list(tmp_path.rglob("*.incomplete"))  # the hub discards the half-fetched file

    _Hub.requests = []
    seen.clear()
    folder = download(REPO, on_progress=lambda d, t: seen.append(d), endpoint=hub, cache_dir=tmp_path)
    assert _fetched() == ["tokenizer.json", "config.json"]  # the finished weights were not fetched again
    assert seen[0] == 0 and seen[1] == len(FILES["model.safetensors"])
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert installed_path(REPO, cache_dir=tmp_path) == folder


def test_cancel_before_start_fetches_nothing(hub, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        download(REPO, cancel=cancel, endpoint=hub, cache_dir=tmp_path)
    assert _fetched() == []


def test_unknown_repo_is_model_not_found(hub, tmp_path):
    with pytest.raises(ModelNotFoundError, match="other/repo was not found on 127.0.0.1"):
        download("other/repo", endpoint=hub, cache_dir=tmp_path)


def test_unreachable_hub_is_a_plain_message(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    message = rf"Cannot reach 127.0.0.1:{port} \(.+\): check the connection.*local folder"
    with pytest.raises(HubUnreachableError, match=message):
        download(REPO, endpoint=f"http://127.0.0.1:{port}", cache_dir=tmp_path)


def test_installed_path_is_none_for_missing_or_empty_cache(tmp_path):
    assert installed_path(REPO, cache_dir=tmp_path) is None
    assert installed_path("not a repo id", cache_dir=tmp_path) is None


def test_catalog_and_notices():
    assert [e.key for e in CATALOG] == ["1B", "3B", "8B", "codec"]
    assert catalog_entry("codec").repo_id == "HKUSTAudio/xcodec2" and catalog_entry("HKUSTAudio/Llasa-3B").key == "3B"
    sizes = [e.download_bytes for e in CATALOG]
    assert sizes[0] < sizes[1] < sizes[2] and all(s > 10**9 for s in sizes)
    assert "CC-BY-NC-4.0" in LICENCE_NOTICE and "non-commercial" in LICENCE_NOTICE
    assert "permission" in CONSENT_NOTICE


def test_downloads_module_does_not_import_torch():
    code = "import sys, engine.models.downloads; print('torch' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
