"""Plug-ins: named components that generic code finds without importing them.

A plug-in (the embedded Shapes world, a user's own dataset) registers its components as
Python entry points in its package metadata (pyproject.toml), one group per kind:

    [project.entry-points."fastlight.models"]        # model presets: name -> () -> Path
    shapes-teacher = "fastlight.shapes.preset:teacher_dir"
    [project.entry-points."fastlight.data"]          # data sources: name -> class
    shapes = "fastlight.shapes.source:ShapesSource"

Generic code asks `component("fastlight.data", "shapes")`; a dotted `package.module:attr`
works too, for components that are not registered (torchtune's `_component_`). This is the
only way generic packages reach a plug-in: they never import one (tests/test_layers.py).
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from fastlight.errors import PluginError


def registered(group: str) -> dict[str, str]:
    """{name: "module:attr"} of the entry points in `group`."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def component(group: str, name: str):
    """The object registered as `name` in `group`, or the `module:attr` named by `name`."""
    value = registered(group).get(name)
    if value is None and ":" in name:
        value = name
    if value is None:
        known = ", ".join(sorted(registered(group))) or "none"
        raise PluginError(f"unknown {group.split('.')[-1]} component {name!r}; registered: {known} "
                          "(or give package.module:attr)")
    module, _, attr = value.partition(":")
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise PluginError(f"component {name!r} points at module {module!r}, which cannot be imported ({e})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"component {name!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
