"""RFNet: a multimodal reviewer simulator for generated ad images (plain torch, no Django).

Modules: config (dataclasses), presets, maps (auxiliary maps), text (caption encoders),
model (RFNet), data (Sample, memmap cache), training (accelerate loop), metrics, scoring.
"""

IMAGE_MODALITIES = ("image", "product", "placed", "mask", "edges", "saliency", "depth")
ALL_MODALITIES = (*IMAGE_MODALITIES, "caption")
