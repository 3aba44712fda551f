"""Reports: PNG plots (:mod:`aad.report.plots`) and CSV/JSON/Markdown tables
(:mod:`aad.report.tables`)."""
