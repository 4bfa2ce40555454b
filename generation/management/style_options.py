"""`--style-reference FILE [--style-scale S]` for the commands that generate (generate_creatives,
recurrent_generate): the local file is validated, checked against the model and stored (content
addressed, through the storage API) only once every other parameter is valid, so a refused
command writes nothing; the job then names the stored image like an API or admin launch does."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from generation import selectors, services
from jobs.kinds import get_kind
from jobs.params import clean_params


def add_style_arguments(parser) -> None:
    parser.add_argument(
        "--style-reference",
        default=None,
        metavar="FILE",
        help="Image whose style every creative follows (IP-Adapter; the model must have one).",
    )
    parser.add_argument(
        "--style-scale",
        type=float,
        default=0.5,
        help="IP-Adapter scale: the reference's weight against the text (default 0.5).",
    )


def style_params(kind: str, params: dict, options) -> dict:
    """`params` + the stored style reference's name and the scale (CommandError naming the
    option when the file, the model or any other parameter is refused)."""
    path = options.get("style_reference")
    params = {**params, "style_scale": options.get("style_scale", 0.5)}
    if not path:
        return params
    try:  # every other parameter first: nothing is stored for a command that fails anyway
        clean_params(get_kind(kind), params)
        model = selectors.resolve_diffusion_model(params.get("model") or "latest")
    except ValidationError as exc:
        raise CommandError(f"Invalid parameters for {kind}: {_format(exc)}") from None
    problem = selectors.style_reference_error(model)
    if problem:
        raise CommandError(f"--style-reference: {problem}")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"--style-reference {path}: {exc.strerror or exc}") from None
    try:
        ref, _ = services.store_style_reference(data=data)
    except ValidationError as exc:
        raise CommandError(f"--style-reference {path}: {' '.join(exc.messages)}") from None
    return {**params, "style_reference": ref.name}


def _format(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in exc.message_dict.items())
    return " ".join(exc.messages)
