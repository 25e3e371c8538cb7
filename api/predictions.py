"""Failure predictions ranked by risk: each device's latest, with its band and drivers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.deps import SignedIn
from api.params import QueryId
from api.problems import responses
from vigil.auth.visibility import device_visible
from vigil.devices.models import Device, Prediction, Site

router = APIRouter(prefix="/predictions", tags=["predictions"])


class RankedPrediction(BaseModel):
    device_id: str
    model: str
    site_id: int | None
    made_at: datetime
    probability: float = Field(description="probability of failure within the horizon")
    horizon_days: float
    rul_days: float | None = Field(description="remaining useful life, best estimate")
    rul_band_days: tuple[float, float] | None = Field(
        description="the remaining-life uncertainty band (lower, upper)")
    drivers: dict[str, Any] = Field(description="metric -> contribution to the prediction")
    fault_type: str | None = Field(None, description="the likely fault, if the model names one")
    basis: dict[str, Any] = Field(
        default_factory=dict,
        description="what the prediction rests on: the device model's failures in training, "
                    "whether the band is the model's own or the fleet's pooled one, and "
                    "whether the probability is the model's own or shared by every model "
                    "(a model with few failures)")
    model_version: str


@router.get("", response_model=list[RankedPrediction], responses=responses(401, 403, 422),
            summary="Devices' latest failure predictions, highest risk first")
def ranked(
    ctx: SignedIn,
    min_probability: Annotated[float, Query(ge=0, le=1)] = 0.0,
    customer_id: QueryId = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RankedPrediction]:
    newest = (
        select(Prediction.id,
               func.row_number().over(partition_by=Prediction.device_id,
                                      order_by=(Prediction.made_at.desc(),
                                                Prediction.id.desc())).label("n"))
        .subquery()
    )
    query = (
        select(Prediction, Device)
        .join(newest, (newest.c.id == Prediction.id) & (newest.c.n == 1))
        .join(Device, Device.id == Prediction.device_id)
        .where(device_visible(ctx.principal), Prediction.probability >= min_probability)
    )
    if customer_id is not None:
        query = query.where(
            Device.site_id.in_(select(Site.id).where(Site.customer_id == customer_id)))
    if model is not None:
        query = query.where(Device.model == model)
    rows = ctx.db.execute(query.order_by(Prediction.probability.desc(), Device.id).limit(limit))
    return [
        RankedPrediction(
            device_id=device.id, model=device.model, site_id=device.site_id,
            made_at=p.made_at, probability=p.probability, horizon_days=p.horizon_days,
            rul_days=p.rul_days,
            rul_band_days=(p.rul_lower_days, p.rul_upper_days)
            if p.rul_lower_days is not None and p.rul_upper_days is not None else None,
            drivers=dict(p.drivers), fault_type=p.fault_type, basis=dict(p.basis),
            model_version=p.model_version)
        for p, device in rows
    ]
