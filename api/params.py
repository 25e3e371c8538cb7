"""Path and query parameters several routers share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from vigil.schemas import MAX_ID

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
