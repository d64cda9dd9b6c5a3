"""The on-disk contract of the studio, owned by this one layer (it imports no other project package):

- workspace.py     the workspace root and its folders ($STUDIO_HOME is read only here)
- names.py         the one safe-name rule (adapters, bases, exports, job ids)
- publish.py       atomic publish of folders (keeps `<name>.previous`) and JSON files
- library.py       base.json / metadata.json, listing and checking bases and adapters
- adapter_file.py  `.onnx_adapter` reading and writing
- limits.py        limits: upload/dataset size, prompt characters, the text-template rule, seed range
- policy.py        what a web request may point to (data files, base models, exports, remote code, token)

Exported Spaces ship this package (standard library at import; numpy/onnxruntime only when an adapter
file is read or written)."""
from .adapter_file import (ADAPTER_FILE, ROWS_DIM, has_rows, read_adapter_arrays, read_adapter_tensors,  # noqa: F401
                           write_adapter_file, write_pair_adapter)
from .library import (BASE_JSON, METADATA_JSON, AdapterInfo, BaseInfo, LibraryError, adapter_dirs,  # noqa: F401
                      check_adapter, delete_adapter, is_real_dir, is_regular, list_adapters, list_bases,
                      read_base, read_json, stat_signature)
from .limits import UPLOAD_ENV, max_upload_bytes, upload_budget_bytes  # noqa: F401
from .names import BASE_VARIANT, JOB_ID_MAX, NAME_MAX, NAME_RULE, is_temp_name, safe_name, skeleton  # noqa: F401
from .publish import fsync_tree, publish, write_json  # noqa: F401
from .workspace import PROJECT_ROOT, Workspace, workspace_root  # noqa: F401
from .owners import (ANONYMOUS, SESSION_PREFIX, SESSIONS, add_upload_owner, counts_against, is_address, quota_holder,
                     quota_of, quota_tag, may_change, may_read_adapter,  # noqa: F401
                     may_use_upload, owner_tag)
from .limits import (SEED_MAX, LimitError, check_build_room, check_finite, check_prompt_chars, check_seed, check_text,  # noqa: F401,E402
                     check_template, check_uploads_room, max_exports, max_prompt_chars)
from .policy import EXPORT_MARKER, OWNER_LINE, QUOTA_LINE, Policy, PolicyError, clean_message, export_owner, export_tags, is_marked_export  # noqa: F401,E402
