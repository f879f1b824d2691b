"""Admin routes for operators (admin role): create one (its token shown once), list, disable."""

from __future__ import annotations

from litestar import get, post
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody

from engine.runtime import Runtime
from gateway.admin.params import OperatorPathName
from gateway.admin.schemas import (
    CreateOperator,
    OperatorCreated,
    OperatorList,
    OperatorOut,
    OptionalReason,
    ReasonBody,
)
from ledger.models import Actor, OperatorRecord


def operator_out(operator: OperatorRecord) -> OperatorOut:
    return OperatorOut(
        name=operator.name,
        role=operator.role,
        token_hint=operator.token_hint,
        disabled=operator.disabled,
        created_at=operator.created_at,
    )


@post("/operators", status_code=201, opt={"role": "admin"})
async def create_operator(
    data: JSONBody[CreateOperator], runtime: NamedDependency[Runtime], actor: NamedDependency[Actor]
) -> OperatorCreated:
    async with runtime.db.transaction():
        operator, token = await runtime.operators.create(actor, name=data.name, role=data.role)
    out = operator_out(operator)
    return OperatorCreated(**{field: getattr(out, field) for field in out.__struct_fields__}, token=token)


@get("/operators", opt={"role": "admin"})
async def list_operators(runtime: NamedDependency[Runtime]) -> OperatorList:
    return OperatorList(operators=[operator_out(operator) for operator in await runtime.operators.list()])


@post("/operators/{name:str}/disable", status_code=200, opt={"role": "admin"})
async def disable_operator(
    name: FromPath[OperatorPathName],
    data: JSONBody[ReasonBody],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
) -> OperatorOut:
    async with runtime.db.transaction():
        operator = await runtime.operators.set_disabled(actor, name, disabled=True, reason=data.reason)
    return operator_out(operator)


@post("/operators/{name:str}/enable", status_code=200, opt={"role": "admin"})
async def enable_operator(
    name: FromPath[OperatorPathName],
    runtime: NamedDependency[Runtime],
    actor: NamedDependency[Actor],
    data: JSONBody[OptionalReason | None] = None,
) -> OperatorOut:
    async with runtime.db.transaction():
        operator = await runtime.operators.set_disabled(
            actor, name, disabled=False, reason=data.reason if data and data.reason else ""
        )
    return operator_out(operator)


ROUTES: list[HTTPRouteHandler] = [create_operator, list_operators, disable_operator, enable_operator]
