"""ComfyUI node pack for cupy_core's warped noise: copy this folder into
ComfyUI/custom_nodes/. Node: Load Warped Noise (NOISE + LATENT)."""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
