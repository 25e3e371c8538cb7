"""Ingest tests get a broker of their own for each test.

Ingest subscribes to every device's topics, so on a shared broker it would
also receive the retained status messages other tests left behind, for
devices its registry does not know, and dead-letter them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import serving
from vigil.servers import Mosquitto


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    yield from serving(Mosquitto(tmp_path_factory.mktemp("mosquitto")))
