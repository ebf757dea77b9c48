"""Scene readers: Blender data -> backward positions in docs/DESIGN.md 3's convention."""
