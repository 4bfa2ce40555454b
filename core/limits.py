"""Input limits shared by the API, the browser routes, the importer and the services (one owner
per limit). Each is configurable by environment through settings (see README "Limits")."""

from __future__ import annotations

from django.conf import settings

# The largest id a route accepts: BigAutoField's maximum. Larger numbers are not ids (404).
MAX_ID = 2**63 - 1
# Integers people type or scripts send (duration_ms, seeds, overlap): PostgreSQL integer range.
MAX_INT32 = 2**31 - 1


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def max_prompt_length() -> int:
    return _setting("RFSTUDIO_MAX_PROMPT_LENGTH", 4000)


def max_title_length() -> int:
    return _setting("RFSTUDIO_MAX_TITLE_LENGTH", 500)


def max_note_length() -> int:
    return _setting("RFSTUDIO_MAX_NOTE_LENGTH", 2000)


def max_reason_length() -> int:
    return _setting("RFSTUDIO_MAX_REASON_LENGTH", 2000)


def max_duration_ms() -> int:
    return MAX_INT32


def max_page_size() -> int:
    return _setting("RFSTUDIO_MAX_PAGE_SIZE", 500)


def max_overlap() -> int:
    return _setting("RFSTUDIO_MAX_OVERLAP", 100)
