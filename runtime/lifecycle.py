"""The activation lifecycle as data: its states, its events and the one table of transitions.

Every change of an activation's ``status`` goes through :func:`transition`, so the table below
is the whole state machine (as h11 keeps its own):

=============  ===================  =============  =========================================
from           event                to             when
=============  ===================  =============  =========================================
ACTIVE         ``suspend``          ACTIVATING     ``on_activate`` suspended; messages wait
ACTIVATING     ``activated``        ACTIVE         ``on_activate`` finished
ACTIVE         ``deactivate``       DEACTIVATING   idle (or the node stops): ``on_deactivate``
ACTIVE         ``migrate``          MIGRATING      its state is being handed to another node
MIGRATING      ``stay``             ACTIVE         the handoff failed: it serves here again
any            ``remove``           DEAD           dropped from the catalog (final)
=============  ===================  =============  =========================================

A new activation starts ACTIVE (it is inserted before ``on_activate`` runs as its first turn).
Only ACTIVE runs new turns (see ``Activation.can_run_now``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from runtime.activation import Activation

__all__ = [
    "ACTIVATING",
    "ACTIVE",
    "DEACTIVATING",
    "DEAD",
    "MIGRATING",
    "TRANSITIONS",
    "transition",
]

ACTIVE: Final = 0
DEACTIVATING: Final = 1
DEAD: Final = 2
ACTIVATING: Final = 3
MIGRATING: Final = 4

#: (state, event) -> new state; ``remove`` leads to DEAD from any state.
TRANSITIONS: Final[dict[tuple[int, str], int]] = {
    (ACTIVE, "suspend"): ACTIVATING,
    (ACTIVATING, "activated"): ACTIVE,
    (ACTIVE, "deactivate"): DEACTIVATING,
    (ACTIVE, "migrate"): MIGRATING,
    (MIGRATING, "stay"): ACTIVE,
}


def transition(act: Activation, event: str) -> bool:
    """Apply ``event`` to ``act``; returns False (and changes nothing) if the table has no
    transition for it from the current state."""
    if event == "remove":
        act.status = DEAD
        return True
    new = TRANSITIONS.get((act.status, event))
    if new is None:
        return False
    act.status = new
    return True
