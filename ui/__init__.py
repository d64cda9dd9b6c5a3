"""Gradio front end: `interface.create_ui(AppEngine)` assembles the Chat, Build and Library tabs.

The UI never imports the trainer or Olive: builds are jobs (subprocesses, pipeline.jobs) whose event
files are read back; chat goes through engine.chat.ChatEngine (onnxruntime-genai)."""
