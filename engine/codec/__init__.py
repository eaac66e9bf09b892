"""Our X-Codec2 speech codec (16 kHz audio <-> 50 Hz codes); never imports the reference package."""
from engine.codec.model import CodecConfig, XCodec2

__all__ = ["CodecConfig", "XCodec2"]
