"""How orders and dates are written to customers."""

from __future__ import annotations

from datetime import date

from crm_bridge.gateway import OrderView

STATUS_WORDS = {
    "processing": "is being prepared in our warehouse",
    "shipped": "is on its way",
    "delivered": "was delivered",
    "cancelled": "was cancelled",
}


def day(value: date) -> str:
    """E.g. ``Thursday 26 November``."""
    return f"{value.strftime('%A')} {value.day} {value.strftime('%B')}"


def items_text(order: OrderView) -> str:
    """E.g. ``1 × Trail Running Shoes, 2 × Merino Socks``."""
    return ", ".join(f"{item.quantity} × {item.name}" for item in order.items)


def order_status_text(order: OrderView, today: date) -> str:
    """One message that answers "where is my order?"."""
    parts = [f"Order {order.number} {STATUS_WORDS.get(order.status, order.status)}."]
    if order.status == "shipped":
        if order.carrier:
            tracking = f", tracking number {order.tracking_code}" if order.tracking_code else ""
            parts.append(f"It's with {order.carrier}{tracking}.")
        if order.expected_delivery:
            when = "today" if order.expected_delivery == today else day(order.expected_delivery)
            parts.append(f"Expected delivery: {when}.")
    elif order.status == "processing" and order.expected_delivery:
        parts.append(f"It should reach you by {day(order.expected_delivery)}.")
    elif order.status == "delivered" and order.delivered_at:
        parts[0] = f"Order {order.number} was delivered on {day(order.delivered_at.date())}."
    parts.append(f"Items: {items_text(order)}.")
    return " ".join(parts)
