"""The arrows of the design hold: engine/ never loads Qt nor the reference codec packages, imports
point from higher layers to lower ones, and every take goes through the one render path."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "xcodec2", "einops", "einx", "vector_quantize_pytorch", "torchtune", "torchaudio")

# engine's packages from the bottom up: a module may import its own layer and the ones below it.
LAYERS = (
    ("engine.config", "engine.errors", "engine.events"),
    ("engine.audio", "engine.text", "engine.models"),
    ("engine.codec", "engine.lm"),
    ("engine.verify", "engine.models.tiny", "engine.models.tiny_verifiers"),
    ("engine.speech",),
    ("engine.voices",),
    ("engine.book",),
    ("engine.session",),
)


def _engine_modules() -> list[str]:
    return [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in sorted((ROOT / "engine").rglob("*.py"))
        if p.stem != "__init__"
    ]


def _layer(module: str) -> int:
    """The layer of the longest LAYERS name that is `module` or a package above it."""
    matches = [(len(g), index) for index, group in enumerate(LAYERS) for g in group
               if module == g or module.startswith(g + ".")]
    assert matches, f"{module} belongs to no layer of tests/test_architecture.py: add it to LAYERS"
    return max(matches)[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `import engine...` / `from engine... import` in a file, lazy ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: no import at run time
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("engine"):
            found += [(node.lineno, node.module if node.module != "engine" else f"engine.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("engine")]
    return found


def test_engine_imports_no_qt_and_no_reference_packages():
    code = (
        "import importlib, sys\n"
        f"for name in {_engine_modules()!r}: importlib.import_module(name)\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"engine loaded: {result.stdout.strip()}"


def test_engine_imports_point_down_the_layers():
    wrong = []
    for module in _engine_modules():
        path = ROOT / (module.replace(".", "/") + ".py")
        for line, target in _imports(path):
            if target != "engine" and _layer(target) > _layer(module):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(wrong)


def test_the_plain_loop_is_only_a_test_reference():
    """No module of app/, cli/ or engine/ other than engine/lm/reference.py uses generate_codes."""
    users = []
    for folder in ("app", "cli", "engine"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "engine" / "lm" / "reference.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
                if name == "generate_codes" or (isinstance(node, ast.alias) and node.name == "generate_codes"):
                    users.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}")
                if isinstance(node, ast.ImportFrom) and node.module == "engine.lm.reference":
                    users.append(f"{path.relative_to(ROOT)}:{node.lineno} imports engine.lm.reference")
    assert not users, "the plain loop is used at run time:\n" + "\n".join(sorted(set(users)))


def test_takes_are_made_only_by_the_render_path():
    """Decoders are built only by the LM (LlasaLM.decoder) and its fast-path self-check, and driven only
    by engine/speech/render.py: every Generate, synth, narration take and search goes through it."""
    built, driven = [], []
    for folder in ("app", "cli", "engine", "server"):
        for path in (ROOT / folder).rglob("*.py"):
            where = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name == "FastDecoder" and where not in ("engine/lm/loading.py", "engine/lm/fast_path.py"):
                    built.append(f"{where}:{node.lineno}")
                if name == "generate" and isinstance(node.func, ast.Attribute) and "decoder" in ast.unparse(node.func.value) \
                        and where != "engine/speech/render.py":
                    driven.append(f"{where}:{node.lineno}")
    assert not built, "decoders built outside the LM:\n" + "\n".join(built)
    assert not driven, "decoders driven outside the render path:\n" + "\n".join(driven)
