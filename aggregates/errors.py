"""Domain errors: commands the current state cannot accept."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke a business rule. `field` names the input at fault, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidValue(DomainError):
    """An input value is impossible (a quantity of zero, a negative price)."""


class NotFound(DomainError):
    """The command refers to something that does not exist (an item not in the cart)."""


class InvalidState(DomainError):
    """The aggregate's state does not allow this command (a change after checkout)."""


class ConsentRequired(DomainError):
    """The customer has not allowed the purpose this command serves (`purpose`)."""

    def __init__(self, message: str, purpose: str) -> None:
        super().__init__(message)
        self.purpose = purpose
