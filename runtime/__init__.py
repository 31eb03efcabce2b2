"""The node runtime: transport, mailboxes, activations, placement, migration, storage.

Internal: user code imports from ``actors``. The public package is loaded first so that the
two packages, which import each other's modules, always initialise in the same order.
"""

import actors  # noqa: F401
