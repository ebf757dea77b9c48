"""Bakes: the frame loops (``loop``: chained and independent frames, resume, an
``on_frame`` hook), the files they write (``files``: atomic writers, bake.json,
latents), progress reporting and latent pooling. docs/DESIGN.md section 9."""
