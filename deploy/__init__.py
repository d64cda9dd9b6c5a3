"""Share and deploy: launch options for share links (`launch`), Hugging Face Space export (`space`),
and Hub upload of a Space or a model repository (`push`). Exported Spaces ship ui/chat_engine.py (the
chat-only app engine) as their ui/engine.py.

  python -m deploy space --out DIR [--base default] [--adapters travel,pirate] [--hardware cpu-basic]
  python -m deploy push --space OWNER/NAME --folder DIR      (token from $HF_TOKEN)
  python -m deploy push --model OWNER/NAME [--base default] [--adapters travel,pirate]

Nothing here is imported by the package itself: each module is light on its own (launch.py uses only
the standard library; the app and pipeline.data take the upload limit from it)."""
