"""Text to speakable segments: normalization, pronunciation rules, pause markup, splitting."""
