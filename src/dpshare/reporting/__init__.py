"""Run records on disk (atomic writes) and the reports rebuilt from them."""
