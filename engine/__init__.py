"""Llasa Studio engine: voice cloning with Llasa + X-Codec2. Never imports Qt."""
