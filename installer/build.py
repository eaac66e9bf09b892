"""Build the Llasa Studio app folder for this OS: `python installer/build.py [--dist DIR] [--work DIR]`.

Runs PyInstaller on installer/llasa-studio.spec (one-folder bundle: the windowed `llasa-studio` and
the console `llasa-studio-cli` sharing one set of libraries), then on Linux also writes
`llasa-studio-<version>-linux-x86_64.tar.gz` and an AppImage-ready `LlasaStudio.AppDir` next to the
bundle. Prints the bundle size. Windows: feed the folder to installer/windows/llasa-studio.iss;
macOS: `installer/macos/make_dmg.sh`. The bundle carries whichever torch is installed in the build
environment (CPU or CUDA): see installer/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "installer" / "llasa-studio.spec"
ICONS = ROOT / "resources" / "icons"
DESKTOP = ROOT / "installer" / "linux" / "llasa-studio.desktop"
NAME = "llasa-studio"  # bundle folder and executable name
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # px, PNG-compressed entries (Windows Vista and later)
ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09"}  # PNG types


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def _png(size: int) -> bytes:
    return (ICONS / f"llasa-studio-{size}.png").read_bytes()


def ico_bytes() -> bytes:
    """A Windows .ico that embeds the PNG renditions (no image library needed)."""
    header = struct.pack("<HHH", 0, 1, len(ICO_SIZES))
    offset, entries, blobs = 6 + 16 * len(ICO_SIZES), b"", b""
    for size in ICO_SIZES:
        data = _png(size)
        side = 0 if size >= 256 else size  # 0 means 256 in the ICONDIRENTRY
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset + len(blobs))
        blobs += data
    return header + entries + blobs


def icns_bytes() -> bytes:
    """A macOS .icns that embeds the PNG renditions."""
    body = b"".join(kind + struct.pack(">I", 8 + len(_png(s))) + _png(s) for s, kind in ICNS_TYPES.items())
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def write_icons() -> None:
    """Regenerate resources/icons/llasa-studio.ico and .icns from the PNGs (run after changing them)."""
    (ICONS / "llasa-studio.ico").write_bytes(ico_bytes())
    (ICONS / "llasa-studio.icns").write_bytes(icns_bytes())


def folder_size(path: Path) -> int:
    """Bytes of the regular files under `path` (symlinks not followed)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_pyinstaller(dist: Path, work: Path) -> Path:
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
               "--distpath", str(dist), "--workpath", str(work), str(SPEC)]
    subprocess.run(command, check=True, cwd=ROOT)
    return dist / NAME


def _link_tree(source: Path, dest: Path) -> None:
    """Copy a folder as hard links where the file system allows it (the bundle is ~1 GB)."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, dest, symlinks=True, copy_function=link)


def linux_packages(bundle: Path, archive: bool) -> list[Path]:
    """The AppDir (appimagetool turns it into an AppImage) and, with `archive`, the tarball."""
    made = []
    appdir = bundle.parent / "LlasaStudio.AppDir"
    shutil.rmtree(appdir, ignore_errors=True)
    _link_tree(bundle, appdir / "usr" / "lib" / NAME)
    shutil.copy2(DESKTOP, appdir / f"{NAME}.desktop")
    shutil.copy2(ICONS / "llasa-studio-256.png", appdir / f"{NAME}.png")
    (appdir / ".DirIcon").symlink_to(f"{NAME}.png")
    apprun = appdir / "AppRun"
    apprun.write_text(f'#!/bin/sh\nHERE="$(dirname "$(readlink -f "$0")")"\nexec "$HERE/usr/lib/{NAME}/{NAME}" "$@"\n')
    apprun.chmod(0o755)
    made.append(appdir)
    if archive:
        tarball = bundle.parent / f"{NAME}-{version()}-linux-x86_64.tar.gz"
        with tarfile.open(tarball, "w:gz", compresslevel=6) as tar:
            tar.add(bundle, arcname=NAME)
            tar.add(DESKTOP, arcname=f"{NAME}/{NAME}.desktop")
            tar.add(ICONS / "llasa-studio-256.png", arcname=f"{NAME}/{NAME}.png")
        made.append(tarball)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build", help="PyInstaller work folder (default build/)")
    parser.add_argument("--no-archive", action="store_true", help="Linux: skip the tarball (the AppDir is still made)")
    parser.add_argument("--icons", action="store_true", help="only regenerate the .ico/.icns from the PNGs")
    args = parser.parse_args(argv)
    if args.icons:
        write_icons()
        return 0
    start = time.monotonic()
    bundle = run_pyinstaller(args.dist.resolve(), args.work.resolve())
    made = [bundle]
    if sys.platform.startswith("linux"):
        made += linux_packages(bundle, archive=not args.no_archive)
    print(f"Built Llasa Studio {version()} in {time.monotonic() - start:.0f} s:")
    for path in made:
        size = folder_size(path) if path.is_dir() else path.stat().st_size
        print(f"  {path}  {size / 2**20:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
