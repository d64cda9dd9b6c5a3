"""Gradio behaviours this app turns off, for requests from strangers (share link, Space). Installed once per
process by ui/interface.py when a demo is built (app.py, exported Spaces, tests); they change Gradio's own
classes and functions, so they hold for every component instance, including the ones Gradio makes per
session when a handler returns gr.update(...) for a component.

- Chat histories hold text only: gr.Chatbot builds a component from every "component" item of the history
  a request sends back, before the handler runs; a few kB of fake history made it decode a 169-Mpixel image
  (GBs of memory, tens of CPU-s a request) or hash and copy workspace files into its cache (red team,
  2026-12-07). A patch on one instance was lost once a handler had updated the Chatbot (Gradio then serves
  that session a new instance).
- Inputs take no file by URL: before any handler or validation, Gradio moves every {"path": ...,
  "meta": {"_type": "gradio.FileData"}} object found anywhere in a request's inputs into its cache, and an
  http(s) path is downloaded by the server, whole, into memory then disk, with no size limit (past the body
  cap, the upload budget and the free-disk floor). This app's files come through /gradio_api/upload only.
- Upload progress trackers are bounded: Gradio kept one per `upload_id` a client names until someone read it
  (~2 kB each, from tiny uploads that cost nothing of the upload budget).
- An upload's parts must be files: a "files" part without a file name (a plain form field) made Gradio's
  upload route raise a TypeError, answered as a bare 500; it is now a 400 with a message.
- The queue is bounded per client and per page (join_refusal), and a session's unread messages are bounded:
  Gradio's 64 waiting places are for the whole server, and results nobody read were kept for good.
- A request whose inputs fail Gradio's checks logs one short line (QuietTraceback), not a traceback with the inputs
  repeated in it.
- `sweep(dir)`: the launchers give Gradio a folder of its own (deploy/launch.py `private_gradio_dir`) and
  sweep it: Gradio's hourly cache cleanup only deletes files it registered, and uploads it refused half-way
  (a bad file name, a field it ignores, a connection cut off) and the folders of deleted files stayed forever.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections import OrderedDict

import gradio as gr
from fastapi import HTTPException
from gradio import processing_utils, queueing, route_utils, routes
from gradio import utils as gr_utils
from gradio_client import utils as client_utils

from deploy.launch import RareLog

_installed = False


def _text_only(preprocess):
    def checked(self, payload):
        for message in getattr(payload, "root", None) or []:
            if any(getattr(item, "type", None) != "text" for item in message.content):
                raise gr.Error("a chat history may hold text only", print_exception=False)
        return preprocess(self, payload)
    checked.__wrapped__ = preprocess
    return checked


MAX_INPUT_DEPTH = 64  # lists and objects inside each other in one input; a chat history has 4 or 5 levels


class TooDeep(ValueError):
    pass


def has_remote_file(data) -> bool:
    """Whether a request's input value holds a FileData object (as Gradio finds them) with an http(s) path.
    Walked without recursion: 900 nested lists made a recursive walk raise RecursionError, each ~2 kB request
    writing a 105 kB traceback to the server's log (red team pass 13); deeper than MAX_INPUT_DEPTH: TooDeep."""
    todo = [(data, 0)]
    while todo:
        x, depth = todo.pop()
        if depth > MAX_INPUT_DEPTH:
            raise TooDeep(f"an input nested more than {MAX_INPUT_DEPTH} levels deep")
        if client_utils.is_file_obj_with_meta(x):
            if client_utils.is_http_url_like(str(x.get("path") or "")):
                return True
        elif isinstance(x, dict):
            todo.extend((v, depth + 1) for v in x.values())
        elif isinstance(x, (list, tuple)):
            todo.extend((v, depth + 1) for v in x)
    return False


MAX_CHAT_MESSAGES = 1_000  # messages of one pane's history a request may send back (a page sends its own panes)


def chat_shape_problem(value) -> str | None:
    """Why a Chatbot input is not a history at all (checked before Gradio's model check, which logged one line per
    bad item: 19,900 zeros, a 40 kB request, wrote 3.9 MB to the log; red team pass 17), or None."""
    if value is None:
        return None
    if not isinstance(value, list):
        return "a chat history must be a list of messages"
    if len(value) > MAX_CHAT_MESSAGES:
        return f"a chat history of {len(value):,} messages; at most {MAX_CHAT_MESSAGES:,} (clear the chat)"
    if not all(isinstance(m, dict) for m in value):
        return "a chat history must be a list of messages (objects with role and content)"
    return None


def _no_remote_inputs(move):
    async def guarded(data, block, postprocess=False, *args, **kwargs):
        if not postprocess:
            plain = data.model_dump() if hasattr(data, "model_dump") else data
            why = chat_shape_problem(plain) if isinstance(block, gr.Chatbot) else None
            if why:  # (refusals here are the request's fault: no traceback in the server's log)
                raise gr.Error(why, print_exception=False)
            try:
                remote = has_remote_file(plain)
            except TooDeep as e:
                raise gr.Error(str(e), print_exception=False) from None
            if remote:
                raise gr.Error("files are taken as uploads only, not by URL", print_exception=False)
        return await move(data, block, postprocess, *args, **kwargs)
    guarded.__wrapped__ = move
    return guarded


MAX_UPLOAD_TRACKERS = 1000


def _bounded(method):
    def bounded(self, upload_id, *args):
        for d in (self._statuses, self._signals):  # oldest first (dicts keep their order)
            while len(d) >= MAX_UPLOAD_TRACKERS and upload_id not in d:
                d.pop(next(iter(d)))
        return method(self, upload_id, *args)
    bounded.__wrapped__ = method
    return bounded


def sweep(folder, max_age_s: float = 3600, now: float | None = None) -> int:
    """Deletes files older than max_age_s under folder, then the folders left empty as old; links are
    removed, never followed. Returns how many entries went."""
    now = time.time() if now is None else now
    gone = 0
    before = {}  # folders' ages as found (deleting a file makes its folder look new)
    for root, dirs, _ in os.walk(folder):
        for name in dirs:
            try:
                before[os.path.join(root, name)] = os.lstat(os.path.join(root, name)).st_mtime
            except OSError:
                pass
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            p = os.path.join(root, name)
            try:
                if now - os.lstat(p).st_mtime > max_age_s:
                    os.unlink(p)
                    gone += 1
            except OSError:
                pass
        for name in dirs:
            p = os.path.join(root, name)
            try:
                if os.path.islink(p):
                    if now - os.lstat(p).st_mtime > max_age_s:
                        os.unlink(p)
                        gone += 1
                elif now - before.get(p, now) > max_age_s and not os.listdir(p):
                    os.rmdir(p)
                    gone += 1
            except OSError:
                pass
    return gone


def sweep_in_background(folder, every_s: float = 600, max_age_s: float = 3600) -> threading.Thread:
    def run():
        while True:
            sweep(folder, max_age_s)  # (a folder gone meanwhile: nothing to walk)
            time.sleep(every_s)
    t = threading.Thread(target=run, name="studio-gradio-sweep", daemon=True)
    t.start()
    return t


def _files_only(upload):
    async def checked(*args, **kwargs):
        try:
            return await upload(*args, **kwargs)
        except TypeError as e:  # route_utils.upload_fn: a "files" part that is no file (no file name)
            raise HTTPException(status_code=400, detail="every 'files' part of an upload must be a file "
                                                         "with a file name") from e
    return checked


# Gradio's queue: 64 waiting events for the whole server, and no bound per client. One client joining cheap events
# faster than they drain kept it full (every other chat "503 Queue is full"), and results nobody read piled up in
# memory without a bound (3,260 events in 25 s: +270 MB, never freed; red team pass 16).
MAX_EVENTS_PER_CLIENT = 16   # waiting or running, per client (ui/slots.py ClientSlots: a public address or an IPv6 /64)
MAX_EVENTS_PER_SESSION = 16  # ... per session id (a page: its loads, its chat, the build view's polls)
MAX_UNKNOWN_WAITING = 48     # waiting events of clients without a known address, together (16 places stay free)
MAX_UNREAD = 64              # messages of a session nobody has read: past them its events end (a reader drains them)
MAX_EVENTS_PER_NETWORK = 32  # ... per IPv6 /48 (ui/slots.py ClientSlots.network_of: one subscriber has many /64s)
CHAT_GROUP = "chat"           # the answers' concurrency id (ui/chat_tab.py): per client as many as may stream


def _events(queue, running: bool = True):
    for eq in list(queue.event_queue_per_concurrency_id.values()):
        yield from list(eq.queue)
    if running:
        for job in list(queue.active_jobs):
            yield from (job or [])


def join_refusal(queue, client: str | None, session: str | None, concurrency_id: str | None = None) -> str | None:
    """Why a new event (of `concurrency_id`) of this client and session may not join the queue now, or None."""
    from ui.slots import ClientSlots, chats_per_client
    network = ClientSlots.network_of(client)
    n_client = n_session = n_network = n_chats = 0
    for ev in _events(queue):
        theirs = getattr(ev, "studio_client", None)
        n_client += client is not None and theirs == client
        n_network += network is not None and getattr(ev, "studio_network", None) == network
        n_session += session is not None and ev.session_hash == session
        n_chats += client is not None and theirs == client and ev.concurrency_id == CHAT_GROUP
    per_client_chats = chats_per_client()
    if concurrency_id == CHAT_GROUP and per_client_chats and n_chats >= per_client_chats:
        # answers beyond those a client may stream would only hold queue places (and run later, one after another)
        return (f"{n_chats} answers from your address are waiting or streaming: wait until one ends (or press "
                "Stop)")
    if n_client >= MAX_EVENTS_PER_CLIENT:
        return f"{n_client} requests from your address are waiting or running: wait for them to end"
    if n_network >= MAX_EVENTS_PER_NETWORK:
        return f"{n_network} requests from your network are waiting or running: wait for them to end"
    if n_session >= MAX_EVENTS_PER_SESSION:
        return f"{n_session} requests of this page are waiting or running: wait for them to end"
    if client is None and sum(getattr(ev, "studio_client", None) is None for ev in _events(queue, running=False)) \
            >= MAX_UNKNOWN_WAITING:
        return "the server is busy: try again in a moment"
    return None


def _join_bounded(push):
    async def bounded(self, body, request, username):
        from ui.slots import ClientSlots
        client = ClientSlots.client_of(request)
        fn = self.blocks.fns.get(body.fn_index) if isinstance(body.fn_index, int) else None
        why = join_refusal(self, client, body.session_hash, getattr(fn, "concurrency_id", None))
        if why:
            return False, why, "queue_full"
        ok, event_id, state = await push(self, body, request, username)
        event = self.event_ids_to_events.get(event_id) if ok and isinstance(event_id, str) else None
        if event is not None:  # (join_refusal reads these of every event in flight)
            event.studio_client, event.studio_network = client, ClientSlots.network_of(client)
        return ok, event_id, state
    bounded.__wrapped__ = push
    return bounded


def _unread_bounded(send):
    def bounded(self, event, message):
        waiting = self.pending_messages_per_session.get(event.session_hash)
        if waiting is None or waiting.qsize() >= MAX_UNREAD:
            # nobody reads this session (or it is gone): its work ends, as for a closed page
            event.alive = False
            return None
        return send(self, event, message)
    bounded.__wrapped__ = send
    return bounded


class LiveSessions(OrderedDict):
    """Gradio's store of undelivered messages per session (an LRU of 2,000 by default): past `max_size` it dropped
    the oldest session whether or not an answer was streaming to it, so 256 new session ids from one client ended
    every other user's answer (red team pass 17). This drops the oldest session with nothing in flight instead;
    sessions with events in flight (bounded by the join limits) are never dropped."""

    def __init__(self, queue, max_size: int, items=()):
        super().__init__(items)
        self.queue, self.max_size = queue, max_size

    def __setitem__(self, key, value) -> None:
        if key in self:
            self.move_to_end(key)
        elif len(self) >= self.max_size:
            # in flight: waiting or running now (not Gradio's pending ids, which a session nobody reads keeps for good)
            busy = {ev.session_hash for ev in _events(self.queue)}
            for old in [k for k in self if k not in busy][:len(self) + 1 - self.max_size]:
                del self[old]
        super().__setitem__(key, value)


def bound_sessions(queue, max_size: int) -> None:
    """Gives a queue the LiveSessions store (ui/interface.py, once the demo's queue exists)."""
    queue.pending_messages_per_session = LiveSessions(queue, max_size, queue.pending_messages_per_session.items())


class QuietTraceback:
    """Stands in for the `traceback` module in Gradio's routes, queueing and utils, which print the whole traceback
    of every handler input that fails its checks (a dropdown value not among its choices, a number out of bounds,
    too few inputs), with the request's inputs repeated in full in the message: one signed-in client with 480 kB
    requests wrote 853 MB to the log in 8 s (red-team pass 22). print_exc writes the first exception of each kind
    with its traceback (cut to 4,000 characters), then one line of at most ~300 characters, at most one a second
    per kind (with a count of the lines not written); $STUDIO_LOG_TRACEBACKS=1 keeps Gradio's own output.
    Everything else is the real module."""

    def __init__(self):
        self._log = RareLog(logging.getLogger("studio.requests"))
        self._lock, self._seen = threading.Lock(), set()

    def __getattr__(self, name):
        return getattr(traceback, name)

    def print_exc(self, *args, **kwargs) -> None:
        if os.environ.get("STUDIO_LOG_TRACEBACKS") == "1":
            return traceback.print_exc(*args, **kwargs)
        e = sys.exc_info()[1]
        kind = type(e).__name__
        with self._lock:
            first = kind not in self._seen and len(self._seen) < 32
            self._seen.add(kind)
        if first:  # the first of each kind with its traceback (cut to 4,000 characters): a real bug shows where
            text = traceback.format_exc()
            self._log.logger.warning("a request failed (the first %s; later ones in one line, at most one a "
                                     "second):\n%s", kind, text if len(text) <= 4000 else text[:2000] + "\n...\n" +
                                     text[-2000:])
            return
        self._log.warning("a request failed: %s: %.240r", kind, str(e), kind=kind)


def install() -> None:
    global _installed
    if _installed:
        return
    gr.Chatbot.preprocess = _text_only(gr.Chatbot.preprocess)
    processing_utils.async_move_files_to_cache = _no_remote_inputs(processing_utils.async_move_files_to_cache)
    routes.upload_fn = _files_only(routes.upload_fn)  # the upload route calls it by this module's global
    progress = route_utils.FileUploadProgress
    progress.track, progress.is_tracked = _bounded(progress.track), _bounded(progress.is_tracked)
    queueing.Queue.push = _join_bounded(queueing.Queue.push)
    queueing.Queue.send_message = _unread_bounded(queueing.Queue.send_message)
    quiet = QuietTraceback()
    for module in (routes, queueing, gr_utils):
        module.traceback = quiet
    _installed = True
