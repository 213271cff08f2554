"""NumPy arrays in a Rasa component's model storage: ``.npz`` files, never pickles."""

from __future__ import annotations

import numpy as np
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage


def write_arrays(
    storage: ModelStorage, resource: Resource, filename: str, arrays: dict[str, np.ndarray]
) -> None:
    """Store ``arrays`` as ``filename`` in the component's resource."""
    with storage.write_to(resource) as directory:
        np.savez(directory / filename, **arrays)


def read_arrays(
    storage: ModelStorage, resource: Resource, filename: str
) -> dict[str, np.ndarray] | None:
    """The arrays stored as ``filename``, or None when the component stored nothing
    (e.g. it was not trained). Object arrays are refused: loading never unpickles."""
    try:
        with (
            storage.read_from(resource) as directory,
            np.load(directory / filename, allow_pickle=False) as stored,
        ):
            return {name: stored[name] for name in stored.files}
    except (ValueError, FileNotFoundError):
        return None
