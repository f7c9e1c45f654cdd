"""Bodies of the offline sync route (`POST /v1/me/sync`), shown in the OpenAPI schema.

An action names its target in `target` (`cart`, `application`, `conversation`, with the
application's or conversation's `id`, or `activity`) and its operation in `operation.op`; both
are tagged unions, so an operation that is not its target's is a 400 for the batch, like any
malformed body. docs/sync.md explains each field and the rules.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from aggregates.activity import MAX_ITEMS
from aggregates.conversation import Medium
from aggregates.forms import Answer
from api.activity_schemas import ActivityItem
from api.application_schemas import StepName, Values
from api.conversation_schemas import Attachments, Text, TurnBody
from api.limits import MAX_BATCH
from api.schemas import Amount, Cart, CurrencyCode, Name, Quantity, Sku
from continuity import activity, applications, carts, conversations
from continuity.sync import (
    ActivityNow,
    ApplicationNow,
    Applied,
    CartNow,
    ConversationNow,
    Duplicate,
    Outcome,
    SyncAction,
)

MAX_STREAM_VERSION = 2**31 - 1
"""The largest version a stream holds (an int4 column)."""

BaseVersion = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=MAX_STREAM_VERSION,
        description="The version of the target the device last saw (its ETag; 0: it saw no"
        " cart). Changes after it that the device did not see are what an action may"
        " conflict with.",
        examples=[3],
    ),
]
OccurredAt = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        description="When it happened on the device, with its UTC offset. Recorded, never used"
        " to order; at most 10 minutes ahead of the server's clock, at most 30 days ago.",
        examples=["2025-03-01T09:30:00Z"],
    ),
]
EventId = Annotated[
    UUID,
    msgspec.Meta(
        description="The action's idempotency key, made once on the device when it is queued:"
        " sending the action again (in any batch, or alone as `Idempotency-Key`) applies it"
        " once."
    ),
]


# -- operations --------------------------------------------------------------------------------


class _Operation(msgspec.Struct, forbid_unknown_fields=True, tag_field="op", kw_only=True):
    pass


class AddItemOperation(_Operation, tag="add_item"):
    """Add to the cart (to an item's quantity if it is there): it commutes, never conflicts."""

    sku: Sku
    name: Name
    unit_price: Amount
    quantity: Quantity = 1
    currency: CurrencyCode | msgspec.UnsetType = msgspec.UNSET

    def command(self) -> carts.Command:
        currency = self.currency if isinstance(self.currency, str) else None
        unit_price = Decimal(self.unit_price)
        return carts.add_item(self.sku, self.name, unit_price, self.quantity, currency)


class ChangeQuantityOperation(_Operation, tag="change_quantity"):
    sku: Sku
    quantity: Quantity

    def command(self) -> carts.Command:
        return carts.change_quantity(self.sku, self.quantity)


class RemoveItemOperation(_Operation, tag="remove_item"):
    sku: Sku

    def command(self) -> carts.Command:
        return carts.remove_item(self.sku)


class CheckoutOperation(_Operation, tag="checkout"):
    def command(self) -> carts.Command:
        return carts.checkout()


class SaveDraftOperation(_Operation, tag="save_draft"):
    step: StepName
    values: Values

    def command(self) -> applications.Action:
        return applications.save_draft(self.step, self.values)


class CompleteStepOperation(_Operation, tag="complete_step"):
    step: StepName
    values: Values

    def command(self) -> applications.Action:
        return applications.complete_step(self.step, self.values)


class GoBackOperation(_Operation, tag="go_back"):
    step: StepName

    def command(self) -> applications.Action:
        return applications.go_back(self.step)


class SubmitOperation(_Operation, tag="submit"):
    def command(self) -> applications.Action:
        return applications.submit()


class WithdrawOperation(_Operation, tag="withdraw"):
    def command(self) -> applications.Action:
        return applications.withdraw()


class SayOperation(_Operation, tag="say"):
    """A customer's turn: turns commute, so a stale one is never a conflict."""

    medium: Medium
    text: Text = ""
    attachments: Attachments = msgspec.field(default_factory=list)

    def command(self) -> conversations.Action:
        turn = TurnBody(medium=self.medium, text=self.text, attachments=self.attachments)
        return conversations.say("customer", None, turn.turn())


class ResolveOperation(_Operation, tag="resolve"):
    def command(self) -> conversations.Action:
        return conversations.resolve("customer")


class RateOperation(_Operation, tag="rate"):
    rating: Annotated[int, msgspec.Meta(ge=1, le=5, description="1 (poor) to 5 (excellent).")]

    def command(self) -> conversations.Action:
        return conversations.rate(self.rating)


class ReopenOperation(_Operation, tag="reopen"):
    def command(self) -> conversations.Action:
        return conversations.reopen("customer")


CartOperation = AddItemOperation | ChangeQuantityOperation | RemoveItemOperation | CheckoutOperation
ApplicationOperation = (
    SaveDraftOperation
    | CompleteStepOperation
    | GoBackOperation
    | SubmitOperation
    | WithdrawOperation
)
ConversationOperation = SayOperation | ResolveOperation | RateOperation | ReopenOperation


class RecordActivityOperation(_Operation, tag="record"):
    """What `POST /v1/me/activity` takes: products viewed, searches, screens, recorded in order
    as one request (the same items under the same key are the same request either way)."""

    items: Annotated[list[ActivityItem], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]

    def command(self) -> activity.Record:
        return activity.Record(tuple(item.item() for item in self.items))


# -- actions -----------------------------------------------------------------------------------


class _Action(msgspec.Struct, forbid_unknown_fields=True, tag_field="target", kw_only=True):
    event_id: EventId
    base_version: BaseVersion
    occurred_at: OccurredAt


class CartAction(_Action, tag="cart"):
    """An action on the customer's current cart."""

    operation: CartOperation

    def action(self) -> SyncAction:
        return SyncAction(
            self.event_id,
            "cart",
            None,
            self.base_version,
            self.occurred_at,
            self.operation.command(),
        )


class ApplicationAction(_Action, tag="application"):
    """An action on one of the customer's applications."""

    id: Annotated[UUID, msgspec.Meta(description="The application's id.")]
    operation: ApplicationOperation

    def action(self) -> SyncAction:
        return SyncAction(
            self.event_id,
            "application",
            self.id,
            self.base_version,
            self.occurred_at,
            self.operation.command(),
        )


class ConversationAction(_Action, tag="conversation"):
    """An action on one of the customer's conversations (base_version is not checked)."""

    id: Annotated[UUID, msgspec.Meta(description="The conversation's id.")]
    operation: ConversationOperation

    def action(self) -> SyncAction:
        return SyncAction(
            self.event_id,
            "conversation",
            self.id,
            self.base_version,
            self.occurred_at,
            self.operation.command(),
        )


class PersonalizationOperation(_Operation, tag="personalization"):
    """The customer allows (true) or refuses (false) personalization, as `PUT
    /v1/me/preferences` records it."""

    allowed: bool

    def command(self) -> activity.SetPersonalization:
        return activity.SetPersonalization(self.allowed)


ActivityOperation = RecordActivityOperation | PersonalizationOperation


class ActivityAction(_Action, tag="activity"):
    """The customer's activity (no `id`). Nothing in it conflicts: `base_version` is not
    checked; a record is refused only while the customer refuses personalization."""

    operation: ActivityOperation

    def action(self) -> SyncAction:
        return SyncAction(
            self.event_id,
            "activity",
            None,
            self.base_version,
            self.occurred_at,
            self.operation.command(),
        )


class SyncBatch(msgspec.Struct, forbid_unknown_fields=True):
    """A device's queued actions, oldest first: they apply in this order."""

    actions: Annotated[
        list[CartAction | ApplicationAction | ConversationAction | ActivityAction],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_BATCH,
            description=f"1 to {MAX_BATCH} actions; a longer queue goes in several batches.",
        ),
    ]


# -- the answer --------------------------------------------------------------------------------


class FieldError(msgspec.Struct):
    field: str | None
    source: str | None
    message: str


class ActionProblem(msgspec.Struct, omit_defaults=True):
    """Why an action was rejected: an RFC 9457 problem (docs/errors.md lists each `type`)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[FieldError] | None = None
    """Each failing answer (`invalid-answers`)."""

    @classmethod
    def of(
        cls, type_: str, title: str, status: int, detail: str, extra: dict[str, Any]
    ) -> ActionProblem:
        errors = extra.get("errors")
        return cls(
            type_,
            title,
            status,
            detail,
            extra.get("field"),
            [FieldError(e["field"], e["source"], e["message"]) for e in errors]
            if isinstance(errors, list)
            else None,
        )


class CurrentCart(msgspec.Struct, tag="cart", tag_field="target"):
    """The customer's cart as it is now (after the batch); null if there is none."""

    cart: Cart | None


class CurrentApplication(msgspec.Struct, tag="application", tag_field="target"):
    """The application as it is now, with the current value of each field the action
    conflicted over (`step.field`: null if it is empty)."""

    id: UUID
    version: int
    status: str
    current_step: str | None
    values: dict[str, Answer]


class CurrentConversation(msgspec.Struct, tag="conversation", tag_field="target"):
    id: UUID
    version: int
    status: str


class CurrentActivity(msgspec.Struct, tag="activity", tag_field="target"):
    personalization: bool
    """False: the customer refuses personalization, so no activity is recorded."""


Current = CurrentCart | CurrentApplication | CurrentConversation | CurrentActivity


class ActionResult(msgspec.Struct, omit_defaults=True):
    """What became of one action: `applied` (at `position` in the log, the target then at
    `version`), `duplicate` (applied by an earlier request: its original `position`), or
    `rejected` (`problem` says why; `current` is the target as it is now, to reconcile)."""

    event_id: UUID
    outcome: Literal["applied", "duplicate", "rejected"]
    position: int | None = None
    version: int | None = None
    problem: ActionProblem | None = None
    current: Current | None = None

    @classmethod
    def of(cls, event_id: UUID, outcome: Outcome, problem: ActionProblem | None) -> ActionResult:
        if isinstance(outcome, Applied):
            return cls(event_id, "applied", outcome.position, outcome.version)
        if isinstance(outcome, Duplicate):
            return cls(event_id, "duplicate", outcome.position)
        return cls(event_id, "rejected", problem=problem, current=current_of(outcome.current))


class SyncAnswer(msgspec.Struct):
    """One result per action, in the order sent."""

    results: list[ActionResult]


def current_of(state: object) -> Current | None:
    """What a rejected action's target is now, as the answer shows it."""
    if isinstance(state, CartNow):
        return CurrentCart(Cart.of(state.cart) if state.cart is not None else None)
    if isinstance(state, ApplicationNow):
        return CurrentApplication(
            state.application_id, state.version, state.status, state.current_step, state.values
        )
    if isinstance(state, ConversationNow):
        return CurrentConversation(state.conversation_id, state.version, state.status)
    if isinstance(state, ActivityNow):
        return CurrentActivity(state.personalization)
    return None
