"""The packaged app. Fast: the Windows/macOS/Linux installer inputs exist and agree with pyproject.toml
and app/ (names, version, icons, per-user folders). Slow: installer/build.py builds the Linux bundle,
and the *built* executables synthesize once from the CLI and once from the real window, driven under
Xvfb with keyboard and mouse input like a user (tests/x11_input.py)."""
from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import plistlib
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import soundfile as sf

import x11_input
from deps import missing
from app.main import APP_NAME, ORGANIZATION

ROOT = Path(__file__).resolve().parents[1]
INSTALLER = ROOT / "installer"
ISS = INSTALLER / "windows" / "llasa-studio.iss"
SPEC = INSTALLER / "llasa-studio.spec"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
EXE, CLI = "llasa-studio", "llasa-studio-cli"
GUI_TIMEOUT_S = 300  # tiny models load and speak in seconds; generous for 2 loaded CI cores


def _load_build():
    spec = importlib.util.spec_from_file_location("installer_build", INSTALLER / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build()


def _iss_defines() -> dict[str, str]:
    return dict(re.findall(r'^#define (\w+) "([^"]*)"', ISS.read_text(encoding="utf-8"), re.M))


# --- fast: the scripts' inputs ---------------------------------------------------------------------
def test_icons_exist_and_the_ico_icns_are_built_from_the_pngs():
    for size in build.ICO_SIZES + tuple(build.ICNS_TYPES):
        assert (build.ICONS / f"llasa-studio-{size}.png").is_file(), size
    # Stale or hand-edited icons fail here: regenerate with `python installer/build.py --icons`.
    assert (build.ICONS / "llasa-studio.ico").read_bytes() == build.ico_bytes()
    assert (build.ICONS / "llasa-studio.icns").read_bytes() == build.icns_bytes()


def test_inno_setup_script_matches_the_app():
    defines = _iss_defines()
    assert defines["AppName"] == APP_NAME
    assert defines["AppVersion"] == VERSION == build.version()
    assert defines["AppExe"] == f"{EXE}.exe"
    # The uninstaller's data folder is where Qt's AppDataLocation puts voices and logs on Windows:
    # %APPDATA%\<organization>\<application>.
    assert defines["DataOrg"] == ORGANIZATION and defines["DataApp"] == APP_NAME
    text = ISS.read_text(encoding="utf-8")
    assert "PrivilegesRequired=lowest" in text
    icon = re.search(r"^SetupIconFile=\{#SourcePath\}\\(.+)$", text, re.M).group(1)
    assert (ISS.parent / icon.replace("\\", "/")).resolve() == build.ICONS / "llasa-studio.ico"
    bundle = re.search(r'^ *#define BundleDir AddBackslash\(SourcePath\) \+ "(.+)"$', text, re.M).group(1)
    assert (ISS.parent / bundle.replace("\\", "/")).resolve() == ROOT / "dist" / EXE  # build.py's default


def test_per_user_data_folder_is_organization_then_application(qapp):
    """(qapp: a QApplication, as the widget tests after this one need: a bare QCoreApplication made
    here would stay the process's application and abort their first QWidget.)"""
    from app.settings import app_data_dir

    app = qapp
    old = app.organizationName(), app.applicationName()
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APP_NAME)
    try:
        assert app_data_dir().parts[-2:] == (ORGANIZATION, APP_NAME)
    finally:
        app.setOrganizationName(old[0])
        app.setApplicationName(old[1])


def test_linux_desktop_entry():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(INSTALLER / "linux" / "llasa-studio.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Name"] == APP_NAME and desktop["Type"] == "Application"
    assert desktop["Exec"].split()[0] == EXE and desktop["Icon"] == EXE
    assert desktop["Categories"].endswith(";")


def test_macos_info_plist_and_dmg_script():
    info = plistlib.loads((INSTALLER / "macos" / "Info.plist").read_bytes())
    assert info["CFBundleName"] == APP_NAME and info["CFBundleExecutable"] == EXE
    assert info["NSMicrophoneUsageDescription"].strip() and info["NSHighResolutionCapable"] is True
    dmg = (INSTALLER / "macos" / "make_dmg.sh").read_text()
    assert "hdiutil create" in dmg and f"{APP_NAME}.app" in dmg


def test_spec_keeps_every_qt_module_the_app_imports():
    keep = ast.literal_eval(re.search(r"^_QT_KEEP = (\{.*\})", SPEC.read_text(), re.M).group(1))
    used = set()
    for path in list((ROOT / "app").glob("*.py")) + list((ROOT / "engine").rglob("*.py")) + [ROOT / "main.py"]:
        used |= set(re.findall(r"PySide6\.(Qt\w+)", path.read_text(encoding="utf-8")))
    assert used and used <= keep, f"add {used - keep} to _QT_KEEP in the spec"
    names = set(re.findall(r'name="([\w-]+)"', SPEC.read_text()))
    assert {EXE, CLI} <= names


# --- slow: build it, run the built executables ----------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """installer/build.py's Linux bundle (built once for this module)."""
    if importlib.util.find_spec("PyInstaller") is None:
        missing("needs PyInstaller (pip install -e '.[build]')")
    if not sys.platform.startswith("linux"):
        pytest.skip("the built-app test runs on Linux")
    out = tmp_path_factory.mktemp("build")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(INSTALLER / "build.py"), "--dist", str(out / "dist"), "--work", str(out / "work"),
         "--no-archive"], cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = out / "dist" / EXE
    print(f"\nbuild: {time.monotonic() - start:.0f} s, bundle {build.folder_size(folder) / 2**20:.0f} MiB")
    appdir = out / "dist" / "LlasaStudio.AppDir"
    assert os.access(appdir / "AppRun", os.X_OK) and (appdir / f"{EXE}.desktop").is_file()
    assert (appdir / f"{EXE}.png").is_file() and (appdir / "usr" / "lib" / EXE / EXE).is_file()
    if importlib.util.find_spec("imageio_ffmpeg"):  # MP3/M4B export runs the ffmpeg binary it ships
        assert any((folder / "_internal" / "imageio_ffmpeg" / "binaries").glob("ffmpeg*"))
    return folder


def _user_env(home: Path) -> dict[str, str]:
    """An environment whose per-user folders (settings, data, caches) are all under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "HF_", "QT_", "PYTHON"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               XDG_CACHE_HOME=str(home / "cache"), HF_HUB_OFFLINE="1")
    return env


def _no_writes_next_to_the_executable(folder: Path, before: set[Path]) -> None:
    assert set(folder.rglob("*")) == before, "the app wrote into its own folder"


@pytest.mark.slow
def test_built_cli_speaks_a_cloned_voice(bundle, tiny_models, speech_clip_16k, tmp_path):
    files = set(bundle.rglob("*"))
    out = tmp_path / "out.wav"
    result = subprocess.run(
        [str(bundle / CLI), "synth", "--lm", str(tiny_models["lm"]), "--codec", str(tiny_models["codec"]),
         "--ref", str(speech_clip_16k[1]), "--ref-text", "The quick brown fox jumps over the lazy dog.",
         "--text", "Hello from the packaged app.", "--seed", "1", "--out", str(out)],
        env=_user_env(tmp_path / "home"), cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    info = sf.info(out)
    assert (info.samplerate, info.channels) == (16000, 1) and info.frames > 0
    _no_writes_next_to_the_executable(bundle, files)


@pytest.mark.slow
def test_built_executable_runs_without_stdout_and_stderr(bundle, tmp_path):
    """A windowed build gets no streams (sys.stdout/stderr are None): printing commands must still work."""
    result = subprocess.run(
        [str(bundle / EXE), "dev", "tiny-models", str(tmp_path / "tiny")],
        env=_user_env(tmp_path / "home"), cwd=tmp_path, timeout=600,
        preexec_fn=lambda: (os.close(1), os.close(2)),
    )
    assert result.returncode == 0
    assert (tmp_path / "tiny" / "lm" / "config.json").is_file() and (tmp_path / "tiny" / "codec").is_dir()


def _write_settings(home: Path, **model: str) -> None:
    """The app's own QSettings file (native format on Linux: XDG_CONFIG_HOME/<org>/<app>.conf)."""
    path = home / "config" / ORGANIZATION / f"{APP_NAME}.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[model]", *(f"{k}={v}" for k, v in model.items()), "", "[sampling]", "seed=1", ""]
    path.write_text("\n".join(lines))


def _log_text(home: Path) -> str:
    log = home / "data" / ORGANIZATION / APP_NAME / "logs" / "llasa-studio.log"
    return log.read_text() if log.exists() else ""


def _launch(bundle: Path, home: Path, display: str) -> subprocess.Popen:
    home.mkdir(exist_ok=True)
    env = {**_user_env(home), "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    return subprocess.Popen([str(bundle / EXE)], env=env, cwd=home, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(app: subprocess.Popen, home: Path) -> str:
    try:
        output, _ = app.communicate(timeout=60)
    finally:
        app.kill()
    log = _log_text(home)
    assert app.returncode == 0, output[-3000:] + log[-3000:]
    assert "Traceback" not in output + log, output[-3000:] + log[-3000:]
    return output


@pytest.fixture
def x_display():
    if reason := x11_input.unavailable_reason():
        missing(f"{reason} (apt-get install xvfb libxtst6)")
    with x11_input.xvfb() as name:
        display = x11_input.Display(name)
        yield name, display
        display.close()


@pytest.mark.slow
def test_built_app_speaks_from_its_window(bundle, tiny_models, x_display, pulse_null_sink, tmp_path):
    name, x = x_display
    home, out = tmp_path / "home", tmp_path / "take.wav"
    _write_settings(home, lm=str(tiny_models["lm"]), codec=str(tiny_models["codec"]), device="cpu")
    files = set(bundle.rglob("*"))
    start = time.monotonic()
    app = _launch(bundle, home, name)
    try:
        window = x.wait_window(APP_NAME, GUI_TIMEOUT_S)
        print(f"\nlaunch to window shown: {time.monotonic() - start:.1f} s")
        x.focus(window)
        x.click(window.x + window.width * 7 // 10, window.y + window.height // 3)  # into the script editor
        x.type("Hello from the packaged app.")
        deadline = time.monotonic() + GUI_TIMEOUT_S
        dialog = None
        while dialog is None:  # Ctrl+E (export) only opens once a take exists; Ctrl+Enter once models are in
            assert time.monotonic() < deadline and app.poll() is None, _log_text(home)
            x.key("Control_L", "e")
            try:
                dialog = x.wait_window("Export audio", 1.0)
            except TimeoutError:
                x.key("Control_L", "Return")
        x.focus(dialog)
        x.key("Control_L", "a")
        x.type(str(out))
        x.key("Return")
        while not out.exists():
            assert time.monotonic() < deadline and app.poll() is None, _log_text(home)
            time.sleep(0.2)
        x.focus(x.wait_window(APP_NAME, 10))
        x.key("Control_L", "q")
        _finish(app, home)
    finally:
        app.kill()
    info = sf.info(out)
    assert (info.samplerate, info.channels) == (16000, 1) and info.frames > 0
    _no_writes_next_to_the_executable(bundle, files)
    assert (home / "data" / ORGANIZATION / APP_NAME / "logs" / "llasa-studio.log").is_file()  # per-user log


@pytest.mark.slow
def test_built_app_first_run_asks_for_models_and_stays_usable(bundle, x_display, tmp_path):
    name, x = x_display
    home = tmp_path / "home"  # no settings, empty model cache: the default model is not installed
    app = _launch(bundle, home, name)
    try:
        dialog = x.wait_window("Set up Llasa Studio", GUI_TIMEOUT_S)
        x.focus(dialog)
        x.key("Escape")  # "later": the window stays open without models
        window = x.wait_window(APP_NAME, 10)
        time.sleep(1.0)
        assert app.poll() is None and "Set up Llasa Studio" not in [w.title for w in x.windows()]
        x.focus(window)
        x.key("Alt_L", "s")  # Settings menu → Preferences…: it opens before any model exists
        time.sleep(0.5)
        x.key("Return")
        preferences = x.wait_window("Preferences", 30)
        x.focus(preferences)
        x.key("Escape")
        x.focus(window)
        x.key("Control_L", "q")
        _finish(app, home)
    finally:
        app.kill()
