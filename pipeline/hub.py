"""Resolve the base model: a local Hugging Face folder, or a Hub id downloaded into the HF cache."""
from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.data import DataError

# Only what the pipeline loads: configs, tokenizer files and safetensors weights (never pickles).
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja",
                  "*.py"]


class ModelNotFound(DataError):
    """The base model could not be found locally or on the Hub."""


def _looks_local(name: str) -> bool:
    if name.startswith(("./", "../", "/", "~", ".\\")) or os.sep in name and name.count("/") > 1:
        return True
    p = Path(name).expanduser()
    return p.exists() or (p.parent != Path(".") and p.parent.exists())


def resolve_model(name_or_path: str, log=None, project_root: Path | None = None) -> Path:
    name = (name_or_path or "").strip()
    if not name:
        raise ModelNotFound("base model is empty: give a Hub id (owner/name) or a local folder")
    candidates = [Path(name).expanduser()]
    if project_root is not None and not candidates[0].is_absolute():
        candidates.insert(0, Path(project_root) / name)
    for p in candidates:
        if p.is_dir():
            if (p / "config.json").is_file():
                if log:
                    log.log(f"base model: local folder {p}")  # (the page scrubs the workspace and project)
                return p.resolve()
            raise ModelNotFound(f"{p}: the folder exists but has no config.json: it is not a Hugging Face "
                                "model folder")
    # a name that points at a folder (as given, or under the project root) that is not there: say so, rather
    # than asking the Hub. (Not _looks_local(str(root / name)): that absolute path "looks local" for every
    # name, and every Hub id failed in the job with "model folder does not exist".)
    nested = Path(name).parent != Path(".")
    if _looks_local(name) or any(p.exists() or (nested and p.parent.exists()) for p in candidates):
        raise ModelNotFound(f"{name}: model folder does not exist")
    if name.count("/") != 1:
        raise ModelNotFound(f"{name!r} is neither a local model folder nor a Hub id of the form owner/name")
    return _download(name, log)


def _download(repo_id: str, log=None) -> Path:
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError as e:  # pragma: no cover
        raise ModelNotFound(f"huggingface_hub is not installed ({e}); use a local model folder") from None
    try:  # the size first: a model that does not fit stops here, not with a full disk
        info = HfApi().model_info(repo_id, files_metadata=True, timeout=15)
    except Exception as e:
        # offline, or the Hub did not answer: only a model already in the cache is used (what is not sized is
        # not downloaded)
        try:
            path = Path(snapshot_download(repo_id=repo_id, allow_patterns=ALLOW_PATTERNS, local_files_only=True))
        except Exception:
            raise _hub_error(repo_id, e) from None
        if not list(path.glob("*.safetensors")):
            raise _hub_error(repo_id, e) from None
        if log:
            log.log(f"base model: {repo_id} from the Hugging Face cache (the Hub did not answer: {type(e).__name__})")
        return path
    check_download_size(repo_id, info)
    if log:
        log.log(f"downloading {repo_id} from the Hugging Face Hub (config, tokenizer, safetensors)")
        log.progress("prepare", 0, 1)
    tqdm_class = _tqdm_for(log)
    try:
        kwargs = dict(repo_id=repo_id, allow_patterns=ALLOW_PATTERNS, revision=info.sha)  # the commit sized
        if tqdm_class is not None:
            kwargs["tqdm_class"] = tqdm_class
        try:
            path = Path(snapshot_download(**kwargs))
        except TypeError:  # older hub without tqdm_class
            kwargs.pop("tqdm_class", None)
            path = Path(snapshot_download(**kwargs))
    except Exception as e:
        raise _hub_error(repo_id, e) from None
    if not list(path.glob("*.safetensors")):
        raise ModelNotFound(f"{repo_id}: the model has no .safetensors weights (only those are loaded)")
    if log:
        log.progress("prepare", 1, 1)
        log.log(f"base model: {repo_id} (snapshot {path.name[:12]} in the Hugging Face cache)")  # (the page shows
        # the log: not the cache's folder, which is under the server's home)
    return path


def _hub_error(repo_id: str, e: Exception) -> ModelNotFound:
    """A Hub failure as a message the user can act on; exception texts (which may carry headers or
    tokens) are never included."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    if isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError)):
        return ModelNotFound(f"{repo_id}: no such model on the Hugging Face Hub (or it is private). Check "
                             "the id, or give a local model folder.")
    if isinstance(e, GatedRepoError):
        return ModelNotFound(f"{repo_id}: the model is gated; accept its license on the Hub and log in "
                             "(huggingface-cli login), or give a local model folder")
    if isinstance(e, LocalEntryNotFoundError):
        return ModelNotFound(f"{repo_id}: {_unreachable()} and the model is not in the local cache. {LOCAL_HINT}")
    # huggingface_hub 1.x and later talk through httpx (2.4: its `httpx2`): a TransportError is the network's
    transport = any(c.__name__ == "TransportError" and c.__module__.startswith("httpx") for c in type(e).__mro__)
    if isinstance(e, OSError) or transport:  # network errors: requests' ConnectionError is an OSError
        return ModelNotFound(f"{repo_id}: {_unreachable()} ({type(e).__name__}). {LOCAL_HINT}")
    return ModelNotFound(f"{repo_id}: the Hub request failed ({type(e).__name__}); no Hub reachable or the "
                         f"id does not exist. {LOCAL_HINT}")


def check_hub_id(name: str, lend_token: bool = True) -> None:
    """A Hub id, checked before a build job exists: in the local cache, else (online) on the Hub
    (lend_token=False: without the server's own token)."""
    import re
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", name) or ".." in name:
        raise ModelNotFound(f"{name!r} is neither a local model folder nor a Hub id of the form owner/name")
    try:
        from huggingface_hub import HfApi, constants, snapshot_download
    except ImportError:  # pragma: no cover
        raise ModelNotFound(f"{name}: huggingface_hub is not installed; give a local model folder") from None
    def cached() -> bool:
        try:
            snapshot_download(repo_id=name, allow_patterns=["config.json"], local_files_only=True)
            return True
        except Exception:
            return False
    if constants.HF_HUB_OFFLINE:
        if cached():
            return
        raise ModelNotFound(f"{name}: {_unreachable()} and the model is not in the local cache. {LOCAL_HINT}")
    try:  # online: sized even when part of it is cached (a stopped download leaves config.json behind)
        info = HfApi().model_info(name, timeout=15, token=None if lend_token else False, files_metadata=True)
    except Exception as e:
        if cached():  # the Hub did not answer: the job uses the cache, or says why not
            return
        raise _hub_error(name, e) from None
    check_download_size(name, info)


def download_bytes(info, repo_id: str | None = None) -> int:
    """What snapshot_download(allow_patterns=ALLOW_PATTERNS) fetches of a model (HfApi.model_info with
    files_metadata=True): the sizes of the files it takes, LFS ones by their LFS size, less the ones already in the
    local cache for that commit (with `repo_id`). ModelNotFound when the Hub gives no usable size for a file (what
    cannot be sized is not downloaded)."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import filter_repo_objects
    files = {s.rfilename: s for s in (info.siblings or [])}
    total = 0
    for f in filter_repo_objects(files, allow_patterns=ALLOW_PATTERNS):
        size = files[f].lfs.size if files[f].lfs else files[f].size
        if type(size) is not int or size < 0:  # (not a bool: True passed as a size of 1 byte)
            raise ModelNotFound(f"{getattr(info, 'id', None) or repo_id}: the Hub gave no size for {f[:200]}, so the "
                                "download cannot be checked against the free disk; it is not downloaded")
        if repo_id and getattr(info, "sha", None):
            try:
                if isinstance(try_to_load_from_cache(repo_id, f, revision=info.sha), str):
                    continue  # already here
            except Exception:  # noqa: BLE001 - not known to be cached: counted
                pass
        total += size
    return total


def check_download_size(repo_id: str, info) -> None:
    """ModelNotFound (a message, no job) when the files to download pass the operator's cap or the free disk of
    the Hugging Face cache less the free-disk floor (artifacts.limits.check_download_room)."""
    from huggingface_hub import constants

    from artifacts.limits import LimitError, check_download_room
    folder = Path(constants.HF_HUB_CACHE)
    while not folder.exists() and folder != folder.parent:  # (a first download makes the cache)
        folder = folder.parent
    try:
        check_download_room(download_bytes(info, repo_id), folder, repo_id)
    except LimitError as e:
        raise ModelNotFound(str(e)) from None


LOCAL_HINT = ("Give a local model folder instead (a folder with config.json, tokenizer files and "
              "*.safetensors, e.g. models/default-hf).")


def _unreachable() -> str:
    """Why the Hub could not be used: switched off (HF_HUB_OFFLINE) or not reachable at the endpoint."""
    try:
        from huggingface_hub import constants
        if constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else constants.HF_HUB_OFFLINE:
            return "no Hugging Face Hub was reachable (offline mode: HF_HUB_OFFLINE is set)"
        return f"no Hugging Face Hub was reachable at {constants.ENDPOINT} (offline or blocked?)"
    except Exception:  # pragma: no cover
        return "no Hugging Face Hub was reachable (offline?)"


PROGRESS_EVERY_S = 0.5


def _tqdm_for(log):
    """A tqdm class that forwards byte progress into the job log (progress events, stage 'prepare')."""
    if log is None:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None

    class LogTqdm(tqdm):
        def __init__(self, *a, **k):
            k["disable"] = False
            k.setdefault("file", open(os.devnull, "w"))
            super().__init__(*a, **k)

        _last = 0.0

        def update(self, n=1):
            r = super().update(n)
            # snapshot_download (hub >= 1.0) makes two aggregated byte bars: "Downloading bytes" (network
            # transfer, xet only) and the bytes written; report the latter, at most every PROGRESS_EVERY_S
            if str(self.desc or "").startswith("Downloading bytes"):
                return r
            now = time.monotonic()
            done = self.total and self.n >= self.total
            if self.total and (done or now - self._last >= PROGRESS_EVERY_S):
                self._last = now
                try:
                    log.progress("prepare", int(self.n), int(self.total))
                except Exception:
                    pass
            return r

    return LogTqdm
