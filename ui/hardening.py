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
"""
from __future__ import annotations

import gradio as gr
from gradio import processing_utils
from gradio_client import utils as client_utils

_installed = False


def _text_only(preprocess):
    def checked(self, payload):
        for message in getattr(payload, "root", None) or []:
            if any(getattr(item, "type", None) != "text" for item in message.content):
                raise gr.Error("a chat history may hold text only")
        return preprocess(self, payload)
    checked.__wrapped__ = preprocess
    return checked


def remote_files(data) -> list[str]:
    """The http(s) paths of the FileData objects in a request's input value (as Gradio finds them)."""
    found: list[str] = []

    def seen(d):
        if client_utils.is_http_url_like(str(d.get("path") or "")):
            found.append(str(d["path"]))
        return d
    if hasattr(data, "model_dump"):
        data = data.model_dump()
    if isinstance(data, (dict, list)):
        client_utils.traverse(data, seen, client_utils.is_file_obj_with_meta)
    return found


def _no_remote_inputs(move):
    async def guarded(data, block, postprocess=False, *args, **kwargs):
        if not postprocess and remote_files(data):
            raise gr.Error("files are taken as uploads only, not by URL")
        return await move(data, block, postprocess, *args, **kwargs)
    guarded.__wrapped__ = move
    return guarded


def install() -> None:
    global _installed
    if _installed:
        return
    gr.Chatbot.preprocess = _text_only(gr.Chatbot.preprocess)
    processing_utils.async_move_files_to_cache = _no_remote_inputs(processing_utils.async_move_files_to_cache)
    _installed = True
