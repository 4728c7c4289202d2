"""The errors the Vionlabs client raises: one base class, split by what an operator can do about them.

`str(error)` is a sentence an operator can act on. It may name the path template and the inventory id, but
never the URL's query string, so the API key cannot leak through an error message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One item of a FastAPI `detail` list: where (`path.version`) and what is wrong."""

    loc: str
    msg: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.msg}" if self.loc else self.msg


class VionlabsError(Exception):
    """Base class of every error the client raises."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


class VionlabsUnavailable(VionlabsError):
    """Vionlabs could not be reached, timed out or failed (5xx): worth trying again later."""

    def __init__(
        self, message: str, *, status_code: int | None = None, outcome_unknown: bool = False
    ) -> None:
        super().__init__(message, status_code=status_code)
        # True when a POST/DELETE may have reached Vionlabs: re-read the task before acting again.
        self.outcome_unknown = outcome_unknown

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"outcome_unknown={self.outcome_unknown!r})"
        )


class VionlabsOutOfTime(VionlabsUnavailable):
    """The caller's deadline (`VionlabsClient.until`) passed before Vionlabs answered, or left no time to
    start another attempt. `outcome_unknown` says whether a POST/DELETE may have reached Vionlabs."""


class VionlabsRateLimited(VionlabsError):
    """Vionlabs answered 429: slow down, and try again after `retry_after` seconds (None when not said)."""

    def __init__(
        self, message: str, *, status_code: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"retry_after={self.retry_after!r})"
        )


class VionlabsUnauthorized(VionlabsError):
    """Vionlabs refused the API key (401/403): missing, invalid, or without access to the Tasks API."""


class VionlabsNoAccess(VionlabsUnauthorized):
    """A results API refused the key (401/403): access is granted per API, so the Tasks API may still work.

    `product` names the results API (`adbreaks`, `markers`, ...)."""

    def __init__(self, message: str, *, status_code: int | None = None, product: str) -> None:
        super().__init__(message, status_code=status_code)
        self.product = product

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"product={self.product!r})"
        )


class VionlabsNotFound(VionlabsError):
    """Vionlabs answered 404: no such item or task there (yet)."""


class VionlabsNoResult(VionlabsNotFound):
    """A results API has nothing for this item yet: 404, `not_yet_available: true`, or an envelope without data.

    Not a failure of the task: the result may appear later (or the item is not processed for `product`)."""

    def __init__(self, message: str, *, status_code: int | None = None, product: str) -> None:
        super().__init__(message, status_code=status_code)
        self.product = product

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"product={self.product!r})"
        )


class VionlabsRejected(VionlabsError):
    """Vionlabs refused the request as invalid (422 and other 4xx); `details` says which field and why."""

    def __init__(
        self, message: str, *, status_code: int | None = None, details: tuple[FieldError, ...] = ()
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.details = tuple(details)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"details={self.details!r})"
        )


class VionlabsBadResponse(VionlabsError):
    """Vionlabs answered with something the client cannot read: not JSON, the wrong shape, or a redirect."""


class ShapeError(Exception):
    """Internal: a parser found JSON that is not the documented shape (the client raises VionlabsBadResponse)."""


class NotYetAvailable(Exception):
    """Internal: a results parser found a well-formed "nothing yet" answer (the client raises VionlabsNoResult)."""
