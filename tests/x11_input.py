"""Drive real X windows from outside the app, as a user would: an Xvfb server, its top-level windows,
and keyboard/mouse input through the XTEST extension (libX11 + libXtst via ctypes, no extra package).

Used by tests/test_installer.py to operate the *built* app, which cannot run test code inside it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_VIEWABLE = 2  # XWindowAttributes.map_state IsViewable
_REVERT_TO_PARENT = 2
_KEYSYMS = {" ": "space", ".": "period", "/": "slash", "-": "minus", ",": "comma", "'": "apostrophe",
            "_": "underscore", "!": "exclam", ":": "colon", "?": "question"}  # shifted ones get Shift


class _Attributes(ctypes.Structure):  # XWindowAttributes
    _fields_ = [
        ("x", ctypes.c_int), ("y", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
        ("border_width", ctypes.c_int), ("depth", ctypes.c_int), ("visual", ctypes.c_void_p),
        ("root", ctypes.c_ulong), ("class_", ctypes.c_int), ("bit_gravity", ctypes.c_int),
        ("win_gravity", ctypes.c_int), ("backing_store", ctypes.c_int), ("backing_planes", ctypes.c_ulong),
        ("backing_pixel", ctypes.c_ulong), ("save_under", ctypes.c_int), ("colormap", ctypes.c_ulong),
        ("map_installed", ctypes.c_int), ("map_state", ctypes.c_int), ("all_event_masks", ctypes.c_long),
        ("your_event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
        ("override_redirect", ctypes.c_int), ("screen", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class Window:
    """A viewable top-level window: X id, title, geometry in root coordinates (px)."""

    id: int
    title: str
    x: int
    y: int
    width: int
    height: int


def unavailable_reason() -> str | None:
    """Why this module cannot run here (missing Xvfb or X libraries), or None."""
    if shutil.which("Xvfb") is None:
        return "needs Xvfb (apt-get install xvfb)"
    for lib, package in (("X11", "libx11-6"), ("Xtst", "libxtst6")):
        if ctypes.util.find_library(lib) is None:
            return f"needs lib{lib} (apt-get install {package})"
    return None


@contextmanager
def xvfb(width: int = 1600, height: int = 1000) -> Iterator[str]:
    """Run a private Xvfb on a free display number; yields its DISPLAY value (":N")."""
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit code {server.poll()})")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


class Display:
    """An X connection that lists windows and sends input like a user (and a minimal window manager)."""

    def __init__(self, name: str) -> None:
        self.x11 = ctypes.CDLL(ctypes.util.find_library("X11"))
        self.xtst = ctypes.CDLL(ctypes.util.find_library("Xtst"))
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XDefaultRootWindow.restype = ctypes.c_ulong
        self.x11.XStringToKeysym.restype = ctypes.c_ulong
        self.x11.XKeycodeToKeysym.restype = ctypes.c_ulong
        self.x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        self.dpy = self.x11.XOpenDisplay(name.encode())
        if not self.dpy:
            raise RuntimeError(f"cannot open X display {name}")
        self.root = self.x11.XDefaultRootWindow(self.dpy)

    def close(self) -> None:
        self.x11.XCloseDisplay(ctypes.c_void_p(self.dpy))

    def windows(self) -> list[Window]:
        """The viewable top-level windows (with no window manager they are the root's children)."""
        root, parent = ctypes.c_ulong(), ctypes.c_ulong()
        children, count = ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        dpy = ctypes.c_void_p(self.dpy)
        self.x11.XQueryTree(dpy, ctypes.c_ulong(self.root), ctypes.byref(root), ctypes.byref(parent),
                            ctypes.byref(children), ctypes.byref(count))
        found = []
        for i in range(count.value):
            wid, attrs, name = children[i], _Attributes(), ctypes.c_char_p()
            if not self.x11.XGetWindowAttributes(dpy, ctypes.c_ulong(wid), ctypes.byref(attrs)):
                continue
            if attrs.map_state != _VIEWABLE:
                continue
            self.x11.XFetchName(dpy, ctypes.c_ulong(wid), ctypes.byref(name))
            title = (name.value or b"").decode("utf-8", "replace")
            found.append(Window(wid, title, attrs.x, attrs.y, attrs.width, attrs.height))
        if children:
            self.x11.XFree(children)
        return found

    def wait_window(self, title: str, timeout_s: float) -> Window:
        """Wait until a viewable top-level window with this exact title exists; returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for window in self.windows():
                if window.title == title:
                    return window
            time.sleep(0.05)
        raise TimeoutError(f"no window {title!r} within {timeout_s:.0f} s; windows: {self.windows()}")

    def focus(self, window: Window) -> None:
        """Give the window the keyboard focus, as a window manager does on click."""
        self.x11.XSetInputFocus(ctypes.c_void_p(self.dpy), ctypes.c_ulong(window.id), _REVERT_TO_PARENT, 0)
        self.x11.XFlush(ctypes.c_void_p(self.dpy))

    def click(self, x: int, y: int) -> None:
        """Left click at root coordinates (px)."""
        dpy = ctypes.c_void_p(self.dpy)
        self.xtst.XTestFakeMotionEvent(dpy, -1, x, y, 0)
        for press in (True, False):
            self.xtst.XTestFakeButtonEvent(dpy, 1, press, 0)
        self.x11.XFlush(dpy)
        time.sleep(0.2)

    def _keycode(self, keysym_name: str) -> tuple[int, bool]:
        dpy = ctypes.c_void_p(self.dpy)
        keysym = self.x11.XStringToKeysym(keysym_name.encode())
        code = self.x11.XKeysymToKeycode(dpy, ctypes.c_ulong(keysym))
        if not code:
            raise ValueError(f"no key for {keysym_name!r}")
        return code, self.x11.XKeycodeToKeysym(dpy, code, 0) != keysym

    def key(self, *names: str) -> None:
        """Press and release a chord of keysyms, e.g. key("Control_L", "Return")."""
        dpy = ctypes.c_void_p(self.dpy)
        codes = []
        for name in names:
            code, shifted = self._keycode(name)
            codes += ([self._keycode("Shift_L")[0]] if shifted else []) + [code]
        for code in codes:
            self.xtst.XTestFakeKeyEvent(dpy, code, True, 0)
        for code in reversed(codes):
            self.xtst.XTestFakeKeyEvent(dpy, code, False, 0)
        self.x11.XFlush(dpy)
        time.sleep(0.02)

    def type(self, text: str) -> None:
        """Type ASCII text key by key."""
        for char in text:
            self.key(char if char.isalnum() else _KEYSYMS[char])
