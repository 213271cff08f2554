"""``CRM_BACKEND`` -> the adapter the outbox worker delivers through.

Adapters are imported only when chosen: their client libraries are needed only by the
deployments that use them, and ``CRM_BACKEND=sql`` (the default) imports none.
"""

from __future__ import annotations

import importlib

from crm_bridge.errors import SettingsError
from crm_bridge.remote.base import RemoteCrm
from crm_bridge.settings import CrmSettings

# backend -> (module, class); each class has ``from_settings(settings)``.
ADAPTERS: dict[str, tuple[str, str]] = {
    "hubspot": ("crm_bridge.remote.hubspot", "HubSpotCrm"),
    "salesforce": ("crm_bridge.remote.salesforce", "SalesforceCrm"),
}


def remote_crm_from_settings(settings: CrmSettings) -> RemoteCrm | None:
    """The remote CRM adapter ``CRM_BACKEND`` names, or None for ``sql`` (nothing to
    mirror). ``SettingsError`` when this build has no such adapter or its settings are
    incomplete (the adapter's ``from_settings`` says which variable)."""
    backend = settings.crm_backend
    if backend == "sql":
        return None
    if backend not in ADAPTERS:
        raise SettingsError(f"CRM_BACKEND={backend!r} names no remote CRM adapter")
    module_name, class_name = ADAPTERS[backend]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # the adapter exists but a library it needs is missing
        raise SettingsError(f"CRM_BACKEND={backend}: this build has no {backend} adapter") from None
    adapter: RemoteCrm = getattr(module, class_name).from_settings(settings)
    return adapter
