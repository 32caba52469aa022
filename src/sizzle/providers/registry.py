"""The provider registry: a name -> plugin class map that `SIZZLE_PROVIDERS` picks from."""

from __future__ import annotations

from sizzle.errors import BadRequest
from sizzle.providers.base import Provider, ProviderContext, SupportsChat, SupportsSsh

_REGISTRY: dict[str, type[Provider]] = {}


def register_provider(cls: type[Provider]) -> type[Provider]:
    """Make a plugin available under its `name`; usable as a class decorator."""
    _REGISTRY[cls.name] = cls
    return cls


def available_providers() -> list[str]:
    return sorted(_REGISTRY)


def serves_chat(name: str | None) -> bool:
    """Whether the plugin called `name` serves its instances' models to chat with: at an
    address it gives (SupportsChat) or through an SSH tunnel (SupportsSsh)."""
    plugin = _REGISTRY.get(name or "")
    return plugin is not None and issubclass(plugin, SupportsChat | SupportsSsh)


def load_providers(context: ProviderContext) -> dict[str, Provider]:
    """Instantiate the plugins `SIZZLE_PROVIDERS` turns on, in the order given."""
    enabled: dict[str, Provider] = {}
    for name in context.settings.enabled_providers:
        if name not in _REGISTRY:
            raise BadRequest(
                f"unknown provider {name!r} in SIZZLE_PROVIDERS; "
                f"known: {', '.join(available_providers())}"
            )
        enabled[name] = _REGISTRY[name](context)
    return enabled


def _register_builtin() -> None:
    from sizzle.providers.demo.plugin import DemoProvider
    from sizzle.providers.lambdalabs.plugin import LambdaProvider
    from sizzle.providers.ollama.plugin import OllamaProvider
    from sizzle.providers.runpod.plugin import RunPodProvider
    from sizzle.providers.vast.plugin import VastProvider

    for plugin in (DemoProvider, OllamaProvider, VastProvider, RunPodProvider, LambdaProvider):
        register_provider(plugin)


_register_builtin()
