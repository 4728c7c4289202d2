"""What makes an inventory id or a version acceptable: the one definition, for the model fields, forms,
services, bulk operations, imports and the webhook. Imports nothing from models.py (models imports it)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

#: `CatalogItem.inventory_id` (and every other field holding an inventory id).
INVENTORY_ID_MAX_LENGTH = 255
#: `ProductTask.version` (and every other field holding a version).
VERSION_MAX_LENGTH = 100

# `.` and `..` would be collapsed by any URL normaliser between us and Vionlabs.
_DOT_SEGMENTS = frozenset({".", ".."})


def validate_storable_text(value: str) -> None:
    """Text a database can store as given: no NUL (PostgreSQL refuses it in text) and no lone surrogate
    (JSON's `\\ud800` escape decodes to one, and no database encoding can hold it)."""
    if "\x00" in value:
        raise ValidationError("Null characters are not allowed.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValidationError("The text holds a character that is not valid Unicode.") from error


def validate_inventory_id(value: str) -> None:
    """An inventory id is stored exactly as given (any printable character, `/` and spaces included), but a
    control character is almost always a broken export, and is refused."""
    if not value.strip():
        raise ValidationError("An inventory id cannot be blank.")
    bad = sorted({f"U+{ord(ch):04X}" for ch in value if ord(ch) < 32 or 127 <= ord(ch) < 160})
    if bad:
        raise ValidationError(f"An inventory id cannot contain control characters (found {', '.join(bad)}).")
    if value in _DOT_SEGMENTS:
        raise ValidationError("'.' and '..' cannot be inventory ids: they cannot be addressed in a URL path.")


def validate_version(value: str) -> None:
    """A version goes into a URL path at Vionlabs: required, at most VERSION_MAX_LENGTH characters, no control
    characters, not `.` or `..`."""
    if not value or not value.strip():
        raise ValidationError("A version is required.")
    if len(value) > VERSION_MAX_LENGTH:
        raise ValidationError(f"The version is too long (at most {VERSION_MAX_LENGTH} characters).")
    if value in _DOT_SEGMENTS or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValidationError(
            f"The version {value!r} cannot be sent to Vionlabs: no control characters, '.' or '..'."
        )
