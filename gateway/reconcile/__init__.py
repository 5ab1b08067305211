"""Reconciliation: sweeps per plant comparing QMS, WMS and ERP for every lot (`sweep.py`), the divergent lots they
find (stored with kinds, statements, first and last seen, resolution: `gateway/store/divergence.py`), re-checks when
events or operations touch a lot, and the lists a caller may read (`service.py`). Repair is a governed operation
(`gateway.operations.service.Operations.repair_lot`).
"""
