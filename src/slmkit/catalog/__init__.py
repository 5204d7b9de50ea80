"""The model catalog, the local store, sources and GGUF metadata (no model is run here)."""
