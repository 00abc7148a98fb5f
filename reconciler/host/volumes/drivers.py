"""The volume drivers: the same for every backend, each one call on the backend chosen for this site."""

from __future__ import annotations

from ...core.actions import Action, Kind, Op
from ..drivers import Context, driver


@driver(Kind.VOLUME, Op.CREATE)
def create(action: Action, ctx: Context) -> str:
    return ctx.volumes.create(action.target, action.after.size)


@driver(Kind.FILESYSTEM, Op.CREATE)
def make_filesystem(action: Action, ctx: Context) -> str:
    return ctx.volumes.make_filesystem(action.target, action.after.size)


@driver(Kind.VOLUME, Op.UPDATE)
def resize(action: Action, ctx: Context) -> str:
    return ctx.volumes.resize(action.target, action.after.size)


@driver(Kind.VOLUME, Op.DISABLE)
def detach(action: Action, ctx: Context) -> str:
    return ctx.volumes.detach(action.target)


@driver(Kind.VOLUME, Op.DESTROY)
def destroy(action: Action, ctx: Context) -> str:
    return ctx.volumes.destroy(action.target)
