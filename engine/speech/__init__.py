"""From text to sound: the one render path, streaming codec decode, best-of-N and chunk search."""
