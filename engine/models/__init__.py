"""Model folders: resolve a hub id or folder, validate it, download with progress, tiny test models."""
