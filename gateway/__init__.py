"""lotgraph: a governed GraphQL gateway over a plant's ERP, QMS, WMS and MES."""

__version__ = "0.1.0"
