"""The adapters of one base: which folders of adapters/ fit it (artifacts.check_adapter gives every
refusal reason, in one place), loading them into the serving backend under a unique key, refreshing on
disk changes (stat-based), retiring replaced or deleted ones once no request uses them, and the stacked
pair adapters of compare mode on the onnxruntime-genai backend (rows layout, docs/DESIGN.md)."""
from __future__ import annotations

import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import artifacts as lib
from .sampling import BASE


@dataclass
class Loaded:
    info: lib.AdapterInfo
    key: str                          # unique name inside the backend (versions get a suffix)
    in_use: int = 0
    retired: bool = False             # deleted/replaced on disk; unloaded when no longer in use


@dataclass
class Pair:
    """A stacked pair adapter (rows layout): batch row 0 gets `members[0]`, row 1 `members[1]`."""
    key: str
    members: tuple                    # keys of the two sides (None = the base)
    in_use: int = 0
    stale: bool = False


class Registry:
    MAX_PAIRS = 4                     # pair adapters kept loaded (each holds both sides' weights)

    def __init__(self, base: lib.BaseInfo, adapters_dir, load: Callable[[Path, str], None],
                 unload: Callable[[str], None], backend_label: str):
        self.base = base
        self.adapters_dir = Path(adapters_dir) if adapters_dir else None
        self._load, self._unload, self._label = load, unload, backend_label
        self.lock = threading.RLock()
        self._loaded: dict[str, Loaded] = {}      # variant name -> live adapter
        self._retired: list[Loaded] = []
        self._refused: dict[str, lib.AdapterInfo] = {}
        self._seen_sig: dict[str, tuple] = {}     # dir name -> signature last checked
        self._version = 0
        self._pairs: OrderedDict[tuple, Pair] = OrderedDict()

    # -- listing
    def variants(self) -> list[str]:
        with self.lock:
            return [BASE, *sorted(self._loaded)]

    def refused(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(n, i.reason) for n, i in sorted(self._refused.items())]

    def refresh(self) -> dict:
        """Load adapters that appeared or changed on disk, forget deleted ones. Stat-based:
        an unchanged folder costs two stat() calls. The folders (untrusted files) are listed and checked
        outside the lock; the lock only guards applying the result. Returns {added, removed, refused}."""
        added, removed, refused = [], [], []
        dirs = {d.name: d for d in lib.adapter_dirs(self.adapters_dir)} if self.adapters_dir else {}
        sigs = {name: lib.stat_signature(d) for name, d in dirs.items()}
        with self.lock:
            changed = [name for name in dirs if self._seen_sig.get(name) != sigs[name]]
        checked = {}
        for name in changed:
            if name == BASE or not lib.safe_name(name):
                checked[name] = lib.AdapterInfo(name=name, dir=dirs[name], reason="reserved or unsafe name")
            else:
                checked[name] = lib.check_adapter(dirs[name], self.base)
        with self.lock:
            for name in list(self._seen_sig):
                if name not in dirs:
                    self._seen_sig.pop(name)
                    self._refused.pop(name, None)
                    if name in self._loaded:
                        self._retire(self._loaded.pop(name))
                        removed.append(name)
            for name, info in checked.items():
                if self._seen_sig.get(name) == sigs[name]:
                    continue  # a concurrent refresh applied it already
                self._seen_sig[name] = sigs[name]
                old = self._loaded.pop(name, None)
                if old is not None:
                    self._retire(old)
                    removed.append(name)
                if info.ok:
                    self._version += 1
                    key = f"{name}#{self._version}"
                    try:
                        self._load(info.path, key)
                    except Exception as e:
                        info.ok, info.reason = False, f"{self._label} refused it: {lib.clean_message(e)[:200]}"
                if info.ok:
                    self._refused.pop(name, None)
                    self._loaded[name] = Loaded(info, key)
                    added.append(name)
                else:
                    self._refused[name] = info
                    refused.append(name)
            self._sweep()
        return {"added": added, "removed": removed, "refused": refused}

    def _retire(self, l: Loaded) -> None:
        l.retired = True
        self._retired.append(l)

    def _sweep(self) -> None:
        live = {l.key for l in self._loaded.values()}
        for key, p in list(self._pairs.items()):
            if any(m is not None and m not in live for m in p.members):
                p.stale = True
            if p.stale and p.in_use == 0:
                self._drop_pair(key)
        keep = []
        for l in self._retired:
            if l.in_use == 0:
                try:
                    self._unload(l.key)
                except Exception:
                    keep.append(l)
            else:
                keep.append(l)
        self._retired = keep

    # -- use
    def check(self, variant: str) -> None:
        with self.lock:
            if variant != BASE and variant not in self._loaded:
                known = ", ".join(self.variants())
                why = dict(self.refused()).get(variant)
                extra = f" (refused: {why})" if why else ""
                raise ValueError(f"unknown variant {variant!r}{extra}; known: {known}")

    def acquire(self, variant: str) -> Loaded | None:
        with self.lock:
            self.check(variant)
            if variant == BASE:
                return None
            l = self._loaded[variant]
            l.in_use += 1
            return l

    def release(self, l: Loaded | None) -> None:
        if l is None:
            return
        with self.lock:
            l.in_use -= 1
            if l.retired:
                self._sweep()

    # -- pair adapters (onnxruntime-genai backend: one adapter per batch, so compare stacks two)
    def acquire_pair(self, va: str, vb: str) -> Pair:
        """The loaded pair adapter for (va, vb), made on first use (a few ms per MB of adapters)."""
        with self.lock:
            self.check(va)
            self.check(vb)
            members = tuple(None if v == BASE else self._loaded[v].key for v in (va, vb))
            p = self._pairs.get(members)
            if p is not None and not p.stale:
                self._pairs.move_to_end(members)
                p.in_use += 1
                return p
            self._version += 1
            key = f"pair:{va}|{vb}#{self._version}"
            files = [None if v == BASE else self._loaded[v].info.path for v in (va, vb)]
            # written to a folder of its own, loaded, and deleted at once: the backend holds what it loaded (a
            # mapped file stays readable after its name is gone), so nothing is left in /tmp however the
            # process ends (a killed server left a pair file per compare before)
            d = Path(tempfile.mkdtemp(prefix="studio-pairs-"))
            try:
                f = d / f"pair-{self._version}.onnx_adapter"
                lib.write_pair_adapter(files[0], files[1], f)
                self._load(f, key)
            finally:
                shutil.rmtree(d, ignore_errors=True)
            p = Pair(key, members, in_use=1)
            self._pairs[members] = p
            while len(self._pairs) > self.MAX_PAIRS:
                old_key, old = next(iter(self._pairs.items()))
                if old.in_use:
                    break
                self._drop_pair(old_key)
            return p

    def _drop_pair(self, members) -> None:
        p = self._pairs.pop(members)
        try:
            self._unload(p.key)
        except Exception:  # pragma: no cover - in use elsewhere: keep it, try again on the next sweep
            self._pairs[members] = p

    def release_pair(self, p: Pair) -> None:
        with self.lock:
            p.in_use -= 1
            if p.stale or len(self._pairs) > self.MAX_PAIRS:
                self._sweep()

    def pair_count(self) -> int:
        with self.lock:
            return len(self._pairs)

    def close(self) -> None:
        with self.lock:
            for l in list(self._loaded.values()):
                self._retire(l)
            self._loaded.clear()
            self._sweep()
