"""Llasa Studio desktop app (PySide6). Talks to engine/ only through the worker bridge."""
