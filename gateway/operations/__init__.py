"""Hold, release and recall orchestration: durable, idempotent operations across QMS, WMS and ERP.

`service.Operations` is the governed operations service (decide, audit, record, run); `executor.py` runs the
steps of `plans.py` through `steps.py`; `announcements.py` tells the bus; `scope.py` says whose an operation is.
"""
