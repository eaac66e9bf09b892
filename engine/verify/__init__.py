"""Verifiers: ASR word/character error rate and speaker similarity."""
