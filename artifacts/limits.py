"""Size limits shared by the app (uploads) and the pipeline (dataset files). Standard library only."""
from __future__ import annotations

import os
from typing import Mapping

UPLOAD_ENV = "STUDIO_MAX_UPLOAD_MB"
MAX_UPLOAD_MB_DEFAULT = 50.0  # uploads to the app and dataset files


def max_upload_bytes(env: Mapping[str, str] | None = None) -> int:
    """The size limit for uploads and dataset files: $STUDIO_MAX_UPLOAD_MB, default 50 MB."""
    env = os.environ if env is None else env
    try:
        mb = float(env.get(UPLOAD_ENV, MAX_UPLOAD_MB_DEFAULT))
    except ValueError:
        mb = MAX_UPLOAD_MB_DEFAULT
    return int(mb * 1e6)
