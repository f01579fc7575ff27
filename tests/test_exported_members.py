from __future__ import annotations

import types

import moesif_agent


def test_public_surface_is_pinned() -> None:
    assert moesif_agent.__all__ == ["Agent", "Options", "__version__"]
    for name in moesif_agent.__all__:
        assert getattr(moesif_agent, name) is not None
    public = {
        name
        for name, value in vars(moesif_agent).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - {"annotations"} == {"Agent", "Options"}
