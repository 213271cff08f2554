"""Proving who a customer is from inside a chat: one service for every proof.

Each method checks one kind of proof and, when it holds, links the channel identity to
the contact at that proof's level (``crm_bridge.identity_links``) and attributes the
current conversation to the contact, in the CRM. Actions and connectors call these
methods and only word the answers, so a Telegram deep link, a web chat link and a code
typed in Slack all end in the same CRM state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from crm_bridge.errors import ContactNotFound, InvalidInput
from crm_bridge.gateway import ContactView, ConversationRef, CrmGateway
from crm_bridge.identity_links import EMAIL_CODE, LINK_TOKEN, PHONE_CONTACT, SHOP_TOKEN
from crm_bridge.link_tokens import LinkTokens
from crm_bridge.one_time_codes import OneTimeCodes
from crm_bridge.shop_tokens import verify_shop_token

logger = logging.getLogger(__name__)

NOT_OWN_CONTACT = "Please share your own contact (the button below), not someone else's."
NO_ACCOUNT_FOR_PHONE = "I couldn't find an account with that phone number."
NO_SHOP_LOGIN = "The shop's login could not be checked here."


@dataclass(frozen=True)
class Identity:
    """Who is chatting: the channel, the channel's id for them, and this conversation."""

    channel: str
    external_id: str
    conversation: ConversationRef | None = None


class IdentityProofs:
    """The proofs a customer can give in a chat; each links them once it holds."""

    def __init__(
        self,
        gateway: CrmGateway,
        codes: OneTimeCodes,
        links: LinkTokens,
        shop_token_secret: str = "",
    ) -> None:
        self._gateway = gateway
        self._codes = codes
        self._links = links
        self._shop_secret = shop_token_secret

    def send_code(self, email: str, who: Identity) -> None:
        """Email a code when ``email`` is a contact's; do nothing visible otherwise (the
        answer must not tell a stranger which addresses are customers). InvalidInput for
        something that is not an email, Conflict when locked or asked too often,
        MailUnavailable when the mail could not go."""
        contact = self._gateway.find_contact_by_email(email)
        if contact is None:
            logger.info("a code was asked for an address that is no contact's")
            return
        self._codes.send(contact.id, who.channel, who.external_id)

    def check_code(self, code: str, who: Identity) -> ContactView:
        """The contact, linked, when ``code`` is this identity's current code."""
        contact_id = self._codes.verify(who.channel, who.external_id, code)
        return self._link(contact_id, who, EMAIL_CODE)

    def redeem_link(self, token: str, who: Identity) -> ContactView:
        """The contact of a deep-link token made from the CRM (single use), linked."""
        contact_id = self._links.redeem(token, who.channel, who.external_id)
        return self._link(contact_id, who, LINK_TOKEN)

    def accept_shop_token(self, token: str, who: Identity) -> ContactView:
        """The contact the shop's signed token names, linked; InvalidInput if the token
        is forged, expired or names nobody we know."""
        if not self._shop_secret:
            raise InvalidInput("token", NO_SHOP_LOGIN)
        customer = verify_shop_token(token, self._shop_secret)
        contact: ContactView | None
        if customer.email is not None:
            contact = self._gateway.find_contact_by_email(customer.email)
        else:
            contact = self._contact_by_ref(customer.contact_ref or "")
        if contact is None:
            raise InvalidInput("token", "The shop's login names no customer we know.")
        return self._link(contact.id, who, SHOP_TOKEN)

    def accept_phone_contact(self, phone: str, own: bool, who: Identity) -> ContactView:
        """The contact with this phone number, linked, when the customer shared their
        own contact (Telegram says whose it is) and exactly one contact has it."""
        if not own:
            raise InvalidInput("phone", NOT_OWN_CONTACT)
        number = phone.strip()
        if number and not number.startswith("+"):
            number = f"+{number}"  # Telegram sends international numbers without "+"
        contact = self._gateway.find_contact_by_phone(number)
        if contact is None:
            raise InvalidInput("phone", NO_ACCOUNT_FOR_PHONE)
        return self._link(contact.id, who, PHONE_CONTACT)

    def _contact_by_ref(self, ref: str) -> ContactView | None:
        if not ref.isdigit():
            return None
        try:
            return self._gateway.get_contact(int(ref))
        except ContactNotFound:
            return None

    def _link(self, contact_id: int, who: Identity, proof: str) -> ContactView:
        self._gateway.link_identity(
            who.channel, who.external_id, contact_id, who.conversation, proof=proof
        )
        logger.info("linked a %s identity to contact %s by %s", who.channel, contact_id, proof)
        contact = self._gateway.find_contact_by_identity(who.channel, who.external_id)
        assert contact is not None  # just linked
        return contact
