"""The local speech API (`python main.py serve`): an OpenAI-compatible HTTP face on one engine thread.

Needs the `server` extra (FastAPI, uvicorn, python-multipart); imports only engine's public API.
"""
