"""The engine: numpy + torch only (no Qt, no napari)."""
