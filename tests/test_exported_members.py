from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import moesif_agent


def test_public_surface_is_pinned() -> None:
    assert moesif_agent.__all__ == ["Agent", "Options", "Outcome", "__version__"]
    for name in moesif_agent.__all__:
        assert getattr(moesif_agent, name) is not None
    public = {
        name
        for name, value in vars(moesif_agent).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - {"annotations"} == {"Agent", "Options", "Outcome"}


INTEGRATIONS = {
    "wsgi": ["MoesifMiddleware", "MoesifWSGIMiddleware"],
    "flask": ["Moesif", "MoesifMiddleware", "MoesifWSGIMiddleware"],
    "asgi": ["FlushOnShutdown", "MoesifASGIMiddleware", "MoesifMiddleware", "ResponseInfo"],
    "starlette": ["MoesifASGIMiddleware", "MoesifMiddleware", "MoesifStarletteMiddleware"],
    "django": ["MoesifDjangoMiddleware", "MoesifMiddleware"],
}


@pytest.mark.parametrize("name", list(INTEGRATIONS))
def test_each_integration_module_pins_its_public_names(name: str) -> None:
    module = importlib.import_module(f"moesif_agent.integrations.{name}")
    assert module.__all__ == INTEGRATIONS[name]
    for exported in module.__all__:
        assert getattr(module, exported) is not None


@pytest.mark.parametrize(
    ("name", "alias", "primary"),
    [
        ("wsgi", "MoesifMiddleware", "MoesifWSGIMiddleware"),
        ("asgi", "MoesifMiddleware", "MoesifASGIMiddleware"),
        ("starlette", "MoesifMiddleware", "MoesifStarletteMiddleware"),
        ("django", "MoesifMiddleware", "MoesifDjangoMiddleware"),
    ],
)
def test_the_reference_agents_name_is_an_alias(name: str, alias: str, primary: str) -> None:
    module = importlib.import_module(f"moesif_agent.integrations.{name}")
    assert getattr(module, alias) is getattr(module, primary)


@pytest.mark.parametrize(
    ("name", "framework", "extra"),
    [
        ("flask", "flask", "flask"),
        ("starlette", "starlette", "starlette"),
        ("django", "django", "django"),
    ],
)
def test_a_missing_framework_names_the_extra_to_install(
    name: str, framework: str, extra: str
) -> None:
    code = (
        f"import sys; sys.modules[{framework!r}] = None\nimport moesif_agent.integrations.{name}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert f"pip install 'moesif-agent[{extra}]'" in done.stderr
