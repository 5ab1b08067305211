"""Workflow settings (`LOTGRAPH_WORKFLOWS__...`): whether lotgraph runs the plant's workflows, and as whom."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WorkflowSettings(BaseModel):
    enabled: bool = Field(
        default=True, description="Run the plant's workflows (receipts, releases on a pass, QMS holds, scrap)."
    )
    principal: str = Field(default="svc-workflows", description="The service principal the workflows act as.")
    plants: list[str] = Field(default_factory=lambda: ["*"], description="Plants the workflows may act in.")
