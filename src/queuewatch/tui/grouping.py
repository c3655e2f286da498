"""Dead letters grouped by cause, for the DLQ browser (``b``): the grouping itself lives in
the DLQ core (:mod:`queuewatch.dlq.causes`), so ``queuewatch dlq causes`` and
``--cause`` use the same definition."""

from __future__ import annotations

from queuewatch.dlq.causes import Cause, group_by_cause, message_shape

__all__ = ["Cause", "group_by_cause", "message_shape"]
