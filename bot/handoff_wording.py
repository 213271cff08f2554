"""What a customer is told about their request for a person, in one place: the action
server's handoff action says it, and so does the Rasa side when that server is down
(``bot.action_endpoint``)."""

from __future__ import annotations

from bot.handoff_service import HandoffAnswer

OPENING_HOURS_HINT = "usually within a few hours during our opening times"


def handoff_answer_text(answer: HandoffAnswer, by_email: bool, intro: str = "") -> str:
    """The answer to a request for a person: already with the team, a ticket for the
    next opening, or queued (with reference, position and typical wait)."""
    if answer.state == "already":
        where = (
            f"You're number {answer.position} in the queue."
            if answer.position
            else "An agent has it."
        )
        return f"{intro}Your conversation is already with our team. {where}"
    how = "by email" if by_email else "here in this chat"
    if answer.state == "offline":
        opening = answer.next_opening
        when = f" from {opening:%A %H:%M} ({opening.tzname()})" if opening else " soon"
        return (
            f"{intro}Our team is offline right now. I've passed your request on under "
            f"reference {answer.ticket_reference}, and a person will get back to you "
            f"{how}{when}. I'm here meanwhile."
        )
    reference = f" (reference {answer.ticket_reference})" if answer.ticket_reference else ""
    queue = f" You're number {answer.position} in the queue." if answer.position else ""
    if answer.position and answer.typical_wait is not None:
        minutes = max(1, round(answer.typical_wait.total_seconds() * answer.position / 60))
        queue += f" The wait is usually about {minutes} minute{'s' if minutes > 1 else ''}."
    return (
        f"{intro}I've passed your conversation to our support team{reference}.{queue} "
        f"A person will join this chat or get back to you {how}, {OPENING_HOURS_HINT}."
    )
