"""Register a local diffusers folder as a diffusion model (validated offline, checksummed)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from generation import registry, selectors


class Command(BaseCommand):
    help = (
        "Register PATH (an inpainting pipeline folder: unet/ vae/ text_encoder/ tokenizer/ "
        "scheduler/ [controlnet/]) as a diffusion model. Loads it with local_files_only=True "
        "and refuses a broken folder."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--name", required=True)
        parser.add_argument("--controlnet", default=None, help="Canny ControlNet folder.")
        parser.add_argument("--lora", default=None, help="UNet LoRA (peft/diffusers format).")
        parser.add_argument(
            "--image-encoder",
            default=None,
            help="IP-Adapter image encoder folder (CLIPVisionModelWithProjection); with "
            "--ip-adapter.",
        )
        parser.add_argument(
            "--ip-adapter",
            default=None,
            help="IP-Adapter weights (.safetensors: image_proj.* and ip_adapter.* keys) for "
            "style-reference conditioning; with --image-encoder.",
        )
        parser.add_argument("--parent", default=None, help="Registered model this derives from.")
        parser.add_argument("--user", default=None)

    def handle(self, *args, **opts):
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"No user {opts['user']!r}.")
        try:
            parent = selectors.resolve_diffusion_model(opts["parent"]) if opts["parent"] else None
            model = registry.register_diffusion_model(
                name=opts["name"],
                path=opts["path"],
                controlnet_path=opts["controlnet"],
                lora_path=opts["lora"],
                image_encoder_path=opts["image_encoder"],
                ip_adapter_path=opts["ip_adapter"],
                parent=parent,
                lineage={"registered_from": str(opts["path"])},
                created_by=user,
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        params = model.config.get("parameters", {})
        self.stdout.write(
            f"Registered {model.name} (checksum {model.checksum[:12]}, "
            f"{sum(params.values()) / 1e6:.2f}M parameters, "
            f"native size {model.config.get('native_size') or 'any'}"
            f"{', style reference (IP-Adapter)' if model.supports_style_reference else ''})"
        )
