"""The arrows of the design hold: engine/ never loads Qt, nor the reference codec packages."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "xcodec2", "einops", "einx", "vector_quantize_pytorch", "torchtune", "torchaudio")


def test_engine_imports_no_qt_and_no_reference_packages():
    modules = [
        f"engine.{p.stem}" if p.parent.name == "engine" else f"engine.codec.{p.stem}"
        for p in sorted((ROOT / "engine").rglob("*.py"))
        if p.stem != "__init__"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"engine loaded: {result.stdout.strip()}"
