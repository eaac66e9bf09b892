"""Long-form narration: book import, the project on disk, narration, joins, loudness, export."""
