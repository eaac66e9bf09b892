"""Audio in and out: clip I/O (any file -> mono float32 16 kHz), and the sound devices."""
