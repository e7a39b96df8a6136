"""Datasets, splits, the reversible transformer and the LightningDataModule."""
