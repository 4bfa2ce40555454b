"""Generation ML: plain torch/diffusers, no Django (configured by dataclasses)."""
