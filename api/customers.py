"""Customers (hospitals) and their sites: everyone reads what they may see, admins change them."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminOnly, SignedIn
from api.params import PathId, QueryId
from api.problems import responses
from vigil.db.base import utcnow
from vigil.devices import registry
from vigil.devices.schemas import CustomerIn, CustomerOut, SiteIn, SiteOut, SitePatch

router = APIRouter(tags=["customers"])


@router.get("/customers", response_model=list[CustomerOut], responses=responses(401, 403),
            summary="Customers the caller may see (a customer's users: their own)")
def list_customers(ctx: SignedIn) -> list[CustomerOut]:
    return [CustomerOut.model_validate(c)
            for c in registry.list_customers(ctx.db, principal=ctx.principal)]


@router.get("/customers/{customer_id}", response_model=CustomerOut,
            responses=responses(401, 403, 404), summary="One customer")
def get_customer(customer_id: PathId, ctx: SignedIn) -> CustomerOut:
    return CustomerOut.model_validate(
        registry.get_customer(ctx.db, principal=ctx.principal, customer_id=customer_id))


@router.post("/customers", response_model=CustomerOut, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 409, 422), summary="Add a customer (admins)")
def create_customer(body: CustomerIn, ctx: AdminOnly) -> CustomerOut:
    return CustomerOut.model_validate(registry.create_customer(
        ctx.db, name=body.name, actor=ctx.principal.username, now=utcnow()))


@router.patch("/customers/{customer_id}", response_model=CustomerOut,
              responses=responses(401, 403, 404, 409, 422), summary="Rename a customer (admins)")
def update_customer(customer_id: PathId, body: CustomerIn, ctx: AdminOnly) -> CustomerOut:
    return CustomerOut.model_validate(registry.rename_customer(
        ctx.db, principal=ctx.principal, customer_id=customer_id, name=body.name,
        actor=ctx.principal.username, now=utcnow()))


@router.get("/sites", response_model=list[SiteOut], responses=responses(401, 403, 422),
            summary="Sites the caller may see, optionally of one customer")
def list_sites(ctx: SignedIn, customer_id: QueryId = None) -> list[SiteOut]:
    return [SiteOut.model_validate(s) for s in
            registry.list_sites(ctx.db, principal=ctx.principal, customer_id=customer_id)]


@router.get("/sites/{site_id}", response_model=SiteOut, responses=responses(401, 403, 404),
            summary="One site")
def get_site(site_id: PathId, ctx: SignedIn) -> SiteOut:
    return SiteOut.model_validate(
        registry.get_site(ctx.db, principal=ctx.principal, site_id=site_id))


@router.post("/sites", response_model=SiteOut, status_code=status.HTTP_201_CREATED,
             responses=responses(401, 403, 409, 422), summary="Add a site to a customer (admins)")
def create_site(body: SiteIn, ctx: AdminOnly) -> SiteOut:
    fields = body.model_dump(exclude={"customer_id"})
    return SiteOut.model_validate(registry.create_site(
        ctx.db, customer_id=body.customer_id, fields=fields, actor=ctx.principal.username,
        now=utcnow()))


@router.patch("/sites/{site_id}", response_model=SiteOut,
              responses=responses(401, 403, 404, 422), summary="Change a site (admins)")
def update_site(site_id: PathId, body: SitePatch, ctx: AdminOnly) -> SiteOut:
    return SiteOut.model_validate(registry.update_site(
        ctx.db, principal=ctx.principal, site_id=site_id,
        fields=body.model_dump(exclude_unset=True), actor=ctx.principal.username, now=utcnow()))
