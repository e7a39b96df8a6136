"""One numeric view of a table for every distance-based metric and attack.

Fidelity metrics (Frechet distance, precision/recall, density/coverage) and attacks
(distance to closest record, DOMIAS, attribute inference) all compare records by Euclidean
distance. They share :class:`TableEncoder`: datetimes become (day, hour, weekday), numeric
columns are median-imputed and standardised, categorical columns one-hot encoded, all fitted on
ONE table named by the caller (the real train split for fidelity, the attacker's reference
population for attacks) so distances mean the same thing across methods.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from dpshare.errors import UserInputError


def _numeric_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetimes -> (ordinal day, hour, day of week); bools -> 0/1; others unchanged."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            out[f"{col}__days"] = (s - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0
            out[f"{col}__hour"] = s.dt.hour + s.dt.minute / 60.0
            out[f"{col}__dow"] = s.dt.day_of_week.astype("float64")
        elif pd.api.types.is_bool_dtype(s):
            out[col] = s.astype("float64")
        else:
            out[col] = s
    return pd.DataFrame(out, index=frame.index)


def _preprocessor(frame: pd.DataFrame) -> ColumnTransformer:
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric]
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="__missing__"),
                    OneHotEncoder(handle_unknown="ignore", min_frequency=5),
                ),
                categorical,
            ),
        ],
        sparse_threshold=0.0,
    )


def _as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical/string columns as plain object arrays (uniform input for the encoders)."""
    frame = frame.copy()
    for c in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return frame


class TableEncoder:
    """Standardised numeric + one-hot categorical features (float32), fitted on one table.

    ``drop`` names columns left out of the view (e.g. the label when an attack must not read
    it). Columns missing from a table passed to :meth:`transform` are a clear error.
    """

    def __init__(self, *, drop: tuple[str, ...] = ()) -> None:
        self.drop = tuple(drop)
        self.columns: list[str] = []

    def fit(self, frame: pd.DataFrame) -> TableEncoder:
        if len(frame) == 0:
            raise UserInputError("cannot fit a feature encoder on an empty table")
        view = self._view(frame, fitting=True)
        self._prep = _preprocessor(view)
        self._prep.fit(view)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        view = self._view(frame, fitting=False)
        out = np.asarray(self._prep.transform(view), dtype=np.float32)
        if not np.isfinite(out).all():
            raise UserInputError("a table holds values that encode to NaN or infinity")
        return out

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.fit(frame).transform(frame)

    @property
    def output_dim(self) -> int:
        return int(self._prep.transform(self._template).shape[1])

    def _view(self, frame: pd.DataFrame, *, fitting: bool) -> pd.DataFrame:
        keep = [c for c in frame.columns if c not in self.drop]
        if fitting:
            self.columns = keep
        else:
            missing = [c for c in self.columns if c not in frame.columns]
            if missing:
                raise UserInputError(
                    f"table lacks column(s) {missing} that the encoder was fitted on"
                )
        view = _as_object(_numeric_view(frame[self.columns]))
        if fitting:
            self._template = view.iloc[:1]
        return view


def sample_rows(frame: pd.DataFrame, n: int | None, *, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of ``frame`` drawn without replacement (all rows when ``n`` is None)."""
    if n is None or len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed)
