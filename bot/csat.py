"""The satisfaction question's buttons, shared by the agent API (which asks it after a
hand-back) and the action that stores the answer."""

from __future__ import annotations

CSAT_BUTTONS = [{"title": str(n), "payload": f'/csat{{"csat_score":"{n}"}}'} for n in range(1, 6)]
