"""The conversations part of the session view: status, who has it, the last turns; a long
conversation keeps only its last turns, and resolved ones give way to open ones."""

from __future__ import annotations

from uuid import uuid4

from aggregates.conversation import Conversation
from projections import conversation as part
from projections.session import SESSION
from tests.helpers import envelopes_of


def test_the_session_shows_a_conversation_handed_off_to_an_agent_with_its_last_turns() -> None:
    chat = Conversation(subject_id=uuid4(), medium="web_chat")
    chat.add_turn("customer", "Where is my order 1182?", "web_chat")
    chat.add_turn("bot", "Let me look.", "web_chat", author_id="orderbot")
    chat.request_handoff("not in my systems", requested_by="orderbot")
    chat.accept("agent-ann")
    for n in range(part.LAST_TURNS + 5):
        chat.add_turn("agent", f"step {n}", "web_chat", author_id="agent-ann")
    folded = SESSION.fold(SESSION.empty(), envelopes_of(chat))
    (view,) = folded.state.conversations
    assert (view.status, view.agent_id, view.handoff_reason) == (
        "with_agent",
        "agent-ann",
        "not in my systems",
    )
    assert view.turns == 2 + part.LAST_TURNS + 5
    assert len(view.last_turns) == part.LAST_TURNS
    assert view.last_turns[-1].text == f"step {part.LAST_TURNS + 4}"
    chat.resolve("agent", agent_id="agent-ann")
    chat.rate(5)
    again = SESSION.fold(folded, envelopes_of(chat, start=100))
    (view,) = again.state.conversations
    assert (view.status, view.agent_id, view.rating) == ("resolved", None, 5)


def test_resolved_conversations_give_way_but_every_open_one_stays() -> None:
    subject = uuid4()
    folded = SESSION.empty()
    position = 1
    for n in range(part.MAX_CONVERSATIONS + 5):
        chat = Conversation(subject_id=subject, medium="email")
        chat.add_turn("customer", f"question {n}", "email")
        if n % 2 == 0:
            chat.resolve("customer")
        envelopes = envelopes_of(chat, start=position)
        position += len(envelopes)
        folded = SESSION.fold(folded, envelopes)
    kept = folded.state.conversations
    assert len(kept) == part.MAX_CONVERSATIONS
    assert sum(v.status == "open" for v in kept) == (part.MAX_CONVERSATIONS + 5) // 2
    times = [v.last_activity for v in kept]
    assert times == sorted(times, reverse=True)
