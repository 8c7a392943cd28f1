"""Reading ``torch.distributed.checkpoint`` directories without running code that came with them.

DCP keeps a checkpoint's index in a pickled ``.metadata`` file and its non-tensor values (the optimizer's
step counts and hyperparameters) as ``torch.save`` bytes, and its stock reader unpickles both with every
class allowed: whoever hands over a checkpoint directory (a manifest of SHA-1s does not help, it comes with
the files) can run code on the machine that loads it. Here the metadata is unpickled by an unpickler that
builds only the types DCP's metadata is made of, and byte values are loaded with ``weights_only=True``
(tensors, numbers, strings and containers); anything else is a ``CheckpointError`` naming the file and the
type, and nothing of it runs.

Example::

    >>> import pickle
    >>> restricted_loads(pickle.dumps(torch.Size([2, 3])))
    torch.Size([2, 3])
    >>> restricted_loads(pickle.dumps(print))
    Traceback (most recent call last):
    ...
    pyramid_mixer.jobs.safe_checkpoint.CheckpointError: builtins.print is not a type a DCP checkpoint's metadata holds
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import ReadItem

_METADATA_TYPES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "TensorProperties", "ChunkStorageMetadata",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},  # a layout by its name
    "torch": {"Size"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "slice"},
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely or does not fit the model it is loaded into."""


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _METADATA_TYPES.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.memory_format)):
            return getattr(torch, name)
        raise CheckpointError(f"{module}.{name} is not a type a DCP checkpoint's metadata holds")


def restricted_loads(data: bytes) -> Any:
    """Unpickles ``data`` building only DCP metadata types (``CheckpointError`` for any other)."""
    return _MetadataUnpickler(io.BytesIO(data)).load()


class SafeReader(dcp.FileSystemReader):
    """DCP's file system reader with the metadata unpickled by ``restricted_loads``."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = Path(self.path) / ".metadata"
        try:
            metadata = restricted_loads(path.read_bytes())
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}: refusing to load it (a crafted or foreign checkpoint)") from None
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable checkpoint metadata ({type(e).__name__}: {e})") from None
        if not isinstance(metadata, Metadata):
            raise CheckpointError(f"{path}: holds a {type(metadata).__name__}, not DCP checkpoint metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner with byte values loaded by ``torch.load(weights_only=True)``."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as e:
            lines = [line for line in str(e).splitlines() if "GLOBAL" in line or "global" in line]
            why = lines[0].strip().rstrip(".") if lines else type(e).__name__
            raise CheckpointError(f"checkpoint value {fqn!r} holds more than tensors, numbers and strings "
                                  f"({why}): refusing to load it (a crafted or foreign checkpoint)") from None
        plain = io.BytesIO()  # what the stock planner reads back: our own pickle of plain data
        torch.save(loaded, plain)
        plain.seek(0)
        super().load_bytes(read_item, plain)


def read_state(state: Dict[str, Any], path: Path) -> None:
    """Loads checkpoint ``path`` into ``state`` in place (DCP, resharding as needed), running nothing from it.

    Raises:
        CheckpointError: the metadata names a type DCP metadata never holds, or a value is not plain data.
    """
    reader = SafeReader(str(path))
    reader.read_metadata()  # first, so that a refused file is this error, not one DCP wraps after a fallback
    try:
        dcp.load(state, storage_reader=reader, planner=SafeLoadPlanner())
    except CheckpointException as e:  # DCP gathers each rank's exception: ours go out as they are
        for cause in failure_causes(e):
            if isinstance(cause, CheckpointError):
                raise cause from None
        raise


def failure_causes(e: CheckpointException) -> List[BaseException]:
    """The exceptions of the ranks a DCP operation failed on (DCP keeps each with its traceback)."""
    return [failure[0] if isinstance(failure, tuple) else failure for failure in e.failures.values()]
