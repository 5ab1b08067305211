"""Reconciliation settings (`LOTGRAPH_RECONCILIATION__...`): whether the sweep runs, over which plants, how often,
in pages of what size, how many requests per second it may send each source it reads, and how long resolved
divergences are kept."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SweepBudget(BaseModel):
    """Requests per second the sweep may send each source (`LOTGRAPH_RECONCILIATION__REQUESTS_PER_SECOND__ERP=5`).
    The sweep has connectors of its own with these limits, so it never takes interactive reads' connections or
    rate limit; a source's own allowance (an ERP's rate limit) must cover its interactive limit plus this."""

    erp: float = Field(default=5.0, gt=0, description="ERP: a batch page and its booked stock, per page.")
    qms: float = Field(default=5.0, gt=0, description="QMS: the page's quality statuses.")
    wms: float = Field(default=5.0, gt=0, description="WMS: the page's stock positions.")


class ReconciliationSettings(BaseModel):
    enabled: bool = Field(
        default=True, description="Sweep the plants in the background and re-check the lot of every plant event."
    )
    plants: list[str] = Field(
        default_factory=lambda: ["*"], description="Plants to sweep; * = every plant the ERP lists."
    )
    interval_seconds: float = Field(
        default=900.0, gt=0, description="From the end of one sweep of a plant to the start of the next."
    )
    page_size: int = Field(
        default=200, ge=1, le=1000,
        description="Lots per page; at most a source's max_batch_keys keeps a page to one request per source.",
    )  # fmt: skip
    requests_per_second: SweepBudget = Field(default_factory=SweepBudget)
    resolved_retention_days: float = Field(
        default=90.0, gt=0,
        description="How long a resolved divergence is kept (the record of how long it lasted); older ones are "
        "deleted when a sweep of their plant completes.",
    )  # fmt: skip
