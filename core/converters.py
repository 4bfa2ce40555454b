"""URL converters. `<id:...>` matches 1–19 digits and refuses numbers above the largest id
(2**63 - 1) with a 404: such numbers used to reach the database and overflow (500)."""

from django.urls import register_converter

from .limits import MAX_ID


class IdConverter:
    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError("not an id")  # Django: the pattern does not match → 404
        return number

    def to_url(self, value) -> str:
        return str(int(value))


register_converter(IdConverter, "id")
