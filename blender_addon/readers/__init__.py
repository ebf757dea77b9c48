"""Scene readers: Blender data -> backward positions in DESIGN.md 3's convention."""
