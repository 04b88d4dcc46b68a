"""What the appliance serves, independent of the transport that carries it.

TFTP and HTTP both ask a ``ContentProvider`` for a ``Content`` by (client,
cleaned path) and report every finished transfer as a ``TransferRecord``.

    provider  the interface, refusals and small ready-made implementations
    paths     filename cleaning policy (containment: no ``..``, no NUL, no ``\\``)
"""

from .paths import MAX_FILENAME_BYTES, clean_path
from .provider import (
    AccessDenied,
    BytesContent,
    Content,
    ContentProvider,
    DictProvider,
    DirectoryProvider,
    FileContent,
    FileNotFound,
    OutOfResources,
    RequestRefused,
    RetryLater,
    TransferRecord,
)

__all__ = [
    "MAX_FILENAME_BYTES",
    "AccessDenied",
    "BytesContent",
    "Content",
    "ContentProvider",
    "DictProvider",
    "DirectoryProvider",
    "FileContent",
    "FileNotFound",
    "OutOfResources",
    "RequestRefused",
    "RetryLater",
    "TransferRecord",
    "clean_path",
]
