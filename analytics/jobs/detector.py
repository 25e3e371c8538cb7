"""The jobs' only door to the detectors (streaming and multivariate), whose API is being reworked.

Everything the scoring job needs from a detector (make one, score a run of
samples, save and restore its state, its alarm level) goes through here, so a
change of the detectors' state format or constructor is absorbed in one file.
A saved state the current detector code refuses (another version, other
parameters) is not an error: that stream starts a fresh baseline, and the
caller counts it.

Saved states of a device are one zlib-compressed JSON document
``{"format": 2, "streams": {metric: state}}``, long lists of floats packed as
base64 doubles: data only, nothing in it is executed when read.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import sys
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from analytics.detectors.base import StreamingDetector, surprise_to_score
from analytics.detectors.ensemble import NoveltyEnsembleDetector

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Detector = StreamingDetector

STATES_FORMAT = 2
PACKED = "f64"  # a list of floats, packed (see _pack)
PACK_MIN = 8
# States are saved on every pass, so speed wins over size: 6 full streams save in 23 ms
# (140 kB) and load in 12 ms, against 36 ms (117 kB) and 23 ms as JSON text at zlib level 6.
ZLIB_LEVEL = 1
# The ensemble's alarm level at its default history (log(500) + 3 nats), for
# detectors that do not state one.
DEFAULT_ALARM_SCORE = surprise_to_score(math.log(500) + 3.0)


def new_detector() -> StreamingDetector:
    """A detector with the defaults tuned on NAB's 5-minute data (steps are resampled to match)."""
    return NoveltyEnsembleDetector()


def restore(state: Mapping[str, Any]) -> StreamingDetector | None:
    """The detector a saved state describes, or None if the current detector code refuses it."""
    try:
        return StreamingDetector.from_state(dict(state))
    except (ValueError, TypeError, KeyError, AttributeError, ImportError):
        return None


def alarm_score(detector: StreamingDetector) -> float:
    """The score at which this detector raises an alarm."""
    surprise = getattr(detector, "alarm_surprise", None)
    if isinstance(surprise, int | float) and math.isfinite(surprise):
        return surprise_to_score(float(surprise))
    return DEFAULT_ALARM_SCORE


def samples_seen(detector: StreamingDetector) -> int | None:
    """How many samples the detector has learned from, if it says."""
    seen = getattr(detector, "seen_", None)
    return seen if isinstance(seen, int) else None


def score(
    detector: StreamingDetector, times_s: Sequence[float], values: Sequence[float]
) -> list[float]:
    """Scores in time order; the detector learns from each sample after scoring it."""
    return detector.update_many(times_s, values)


def _pack(value: Any) -> Any:
    """Long lists of floats as base64 of little-endian doubles: exact, and faster than JSON's
    float text (6 full streams: 26 ms as JSON text, 11 ms packed then JSON)."""
    if isinstance(value, dict):
        return {k: _pack(v) for k, v in value.items()}
    if isinstance(value, list):
        # The types as a set: a third of the time of a check per item (100 against 290 us for
        # 4,000 floats), which was a third of packing.
        if len(value) >= PACK_MIN and set(map(type, value)) == {float}:
            numbers = array("d", value)
            if sys.byteorder == "big":
                numbers.byteswap()
            return {PACKED: base64.b64encode(numbers.tobytes()).decode("ascii")}
        return [_pack(v) for v in value]
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and PACKED in value:
            numbers = array("d")
            numbers.frombytes(base64.b64decode(value[PACKED]))
            if sys.byteorder == "big":
                numbers.byteswap()
            return numbers.tolist()
        return {k: _unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    return value


def encode_states(detectors: Mapping[str, StreamingDetector]) -> bytes:
    streams = {metric: _pack(d.get_state()) for metric, d in sorted(detectors.items())}
    document = {"format": STATES_FORMAT, "streams": streams}
    return zlib.compress(json.dumps(document, allow_nan=False).encode(), ZLIB_LEVEL)


def decode_states(blob: bytes | None) -> tuple[dict[str, StreamingDetector], list[str]]:
    """Detectors restored from a saved blob, and the metrics whose state had to be dropped."""
    if not blob:
        return {}, []
    try:
        document = json.loads(zlib.decompress(blob))
    except (zlib.error, ValueError):
        return {}, ["*"]
    if not isinstance(document, dict) or document.get("format") != STATES_FORMAT:
        return {}, ["*"]
    detectors: dict[str, StreamingDetector] = {}
    dropped: list[str] = []
    for metric, packed in document.get("streams", {}).items():
        state = _unpack(packed)
        detector = restore(state) if isinstance(state, dict) else None
        if detector is None:
            dropped.append(metric)
        else:
            detectors[metric] = detector
    return detectors, dropped


class DecodedStates:
    """The detectors of the devices a worker scored last, kept decoded between its passes.

    Decoding a device's saved states costs about as much as scoring a day of its
    readings (8 streams: 23 to 35 ms against 28 to 39 ms, with 39 to 42 ms to encode
    them again), so a worker that scores the same devices pass after pass keeps their
    detectors. An entry is found by the saved blob it was encoded to, not trusted by
    device alone: if the transaction that saved it rolled back, or another worker
    saved the device since, the blob read differs and the states are decoded from it.
    ``take`` removes the entry, so detectors a failed pass left half-updated are
    never reused. Decoded, a device's detectors hold about 1.5 MB (8 streams at
    their full history, by tracemalloc): ``capacity`` bounds the devices kept,
    least recently scored dropped first.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[str, tuple[bytes, dict[str, StreamingDetector]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    @staticmethod
    def _digest(blob: bytes) -> bytes:
        return hashlib.blake2b(blob, digest_size=16).digest()  # 0.3 ms for a 260 kB blob

    def take(self, key: str, blob: bytes | None
             ) -> tuple[dict[str, StreamingDetector], list[str]]:
        """The detectors ``blob`` holds: the kept ones if they were saved as ``blob``, else
        decoded from it (with the metrics whose state had to be dropped)."""
        kept = self._kept.pop(key, None)
        if blob and kept is not None and kept[0] == self._digest(blob):
            return kept[1], []
        return decode_states(blob)

    def keep(self, key: str, blob: bytes | None, detectors: dict[str, StreamingDetector]) -> None:
        """After saving ``detectors`` as ``blob``."""
        if self.capacity <= 0 or not blob:
            return
        self._kept[key] = (self._digest(blob), detectors)
        self._kept.move_to_end(key)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)


# -- multivariate detector per device model ------------------------------------------------


def new_multivariate() -> Any:
    """A multivariate detector with its defaults: each step rated by the window ending at it."""
    from analytics.multivariate import WindowDetector

    return WindowDetector()


def multivariate_context(model: Any) -> int:
    """Steps before the first scored one that its window reads (0 for a one-row detector)."""
    window = getattr(model, "window", 1)
    return max(0, int(window) - 1) if isinstance(window, int) else 0


def multivariate_anomaly(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """Anomaly in [0, 1] per row, higher is stranger, under either sign convention.

    The detector's ``score_samples`` is turning into scikit-learn's (lower is more
    abnormal) with ``anomaly_score`` keeping the old meaning; this reads whichever exists.
    """
    import numpy as np

    anomaly = getattr(model, "anomaly_score", None)
    values = anomaly(frame) if anomaly is not None else model.score_samples(frame)
    return np.asarray(values, dtype=float)


def multivariate_flags(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """True where a row is an outlier at the detector's own threshold.

    ``frame`` may hold several devices (a ``device`` column): a windowed detector takes each
    device's windows apart.
    """
    import numpy as np

    predict = getattr(model, "predict", None)
    if predict is not None:
        return np.asarray(predict(frame)) == -1
    return multivariate_anomaly(model, frame) > float(model.threshold)


def multivariate_sensor_faults(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """True where a row's window shows a dead or stuck sensor (never, for a one-row detector)."""
    import numpy as np

    faults = getattr(model, "sensor_faults", None)
    if faults is None:
        return np.zeros(len(frame), dtype=bool)
    return np.asarray(faults(frame), dtype=bool)


def multivariate_features(model: Any) -> list[str]:
    """The metrics a fitted multivariate detector reads, in its order."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        names = model.metrics_
    return [str(n) for n in names]


def multivariate_steps(model: Any, frame: pd.DataFrame, *, context: int = 0) -> list[float]:
    """Anomaly per row of one device's resampled readings, each rated with the rows before it
    (a windowed detector's window); NaN where the row has none of the model's metrics. The
    first ``context`` rows are only history for the windows: no score is returned for them."""
    features = multivariate_features(model)
    rows = frame.reindex(columns=features)
    known = rows.notna().any(axis=1).to_numpy()
    out = [math.nan] * len(rows)
    if known.any():
        for i, value in zip(known.nonzero()[0], multivariate_anomaly(model, rows[known]),
                            strict=True):
            out[int(i)] = float(value)
    return out[context:]
