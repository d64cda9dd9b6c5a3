"""Chat engine: adapters registry + onnxruntime-genai or plain-onnxruntime backend (no UI code).
See docs/DESIGN.md, section Engine."""
from .chat import BASE, ChatEngine, SamplingParams, Stats  # noqa: F401
from artifacts import (AdapterInfo, BaseInfo, LibraryError, delete_adapter, list_adapters,  # noqa: F401
                      list_bases, read_base)
