"""Share and deploy: launch options for share links (`launch`), Hugging Face Space export (`space`),
Hub upload of a Space or a model repository (`push`), and the chat-only app engine that exported
Spaces ship as ui/engine.py (`chat_engine`).

  python -m deploy space --out DIR [--base default] [--adapters travel,pirate] [--hardware cpu-basic]
  python -m deploy push --space OWNER/NAME --folder DIR      (token from $HF_TOKEN)
  python -m deploy push --model OWNER/NAME [--base default] [--adapters travel,pirate]

Nothing here is imported by the package itself: each module is light on its own (launch.py and
chat_engine.py use only the standard library, engine/ and Gradio-free code)."""
