"""The handler registry a stock agent serves: runtime handlers plus every
workload's. A workload adds one import and one ``update`` line here."""
from edgebed.device import feel_handlers, runtime_handlers, split_handlers, tl_handlers
from edgebed.device.handlers import HandlerRegistry


def default_handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.update(runtime_handlers.registry)
    registry.update(tl_handlers.registry)
    registry.update(feel_handlers.registry)
    registry.update(split_handlers.registry)
    return registry
