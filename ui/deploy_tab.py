"""Deploy tab: export a chat-only Hugging Face Space folder (deploy.space) and publish a Space or a model
repository to the Hub (deploy.push). The token field is a password box; the token is used for the one
upload only (never stored, logged or shown; scrubbed from error messages).

Request policy (app.policy, artifacts.Policy): exports go to <workspace>/exports/<name>/ only, replacing
and publishing take only marked exports, the server's $HF_TOKEN is used only when the operator started
the app with --allow-server-token, and new repositories are private unless the box is unticked."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import gradio as gr

from ui.slots import PAGE, Gate, requester

HARDWARE_HELP = "CPU hardware installs onnxruntime-genai; GPU hardware the -cuda build with onnxruntime-gpu"


@dataclass
class DeployTab:
    base: gr.Dropdown
    adapters: gr.CheckboxGroup
    hardware: gr.Dropdown
    out: gr.Textbox
    export: gr.Button
    export_message: gr.Markdown
    kind: gr.Radio
    repo_id: gr.Textbox
    token: gr.Textbox
    private: gr.Checkbox
    exist_ok: gr.Checkbox
    folder: gr.Textbox
    push: gr.Button
    push_message: gr.Markdown
    on_load: object = None


def _default_out(app, base: str | None) -> str:
    return f"space-{base or 'default'}"


def exportable(app, info, client: str | None) -> bool:
    """Whether `client` may export or push adapter `info` (artifacts.may_read_adapter: its metadata holds its
    evaluation's held-out examples, from the builder's data: red-team pass 29)."""
    from artifacts import may_read_adapter
    return may_read_adapter(app.ws, info.metadata or {}, client)


def _others(app, names, client) -> str:
    """A refusal naming the adapters of `names` that `client` may not export, or ''."""
    names = set(names or [])
    if client is None or not names:
        return ""
    bad = sorted(a.name for a in app.adapters(None) if a.name in names and not exportable(app, a, client))
    return (f"adapters {', '.join(bad)} are other users': a Space or repository may hold the shipped adapters and "
            "yours") if bad else ""


def export_turn_s() -> float:
    """How long a client waits after its export or push before the next ($STUDIO_EXPORT_TURN_S, default 5; at
    least as long as the last one took: ui.slots.Gate)."""
    try:
        v = float(os.environ.get("STUDIO_EXPORT_TURN_S", "5"))
    except ValueError:
        return 5.0
    return v if 0 <= v < 1e6 else 5.0


def export_action(app, base, adapters, hardware, out, force=False, client: str | None = None):
    """Returns (markdown message, export name or ''). client: who asks (deploy/clients.share_of; None: the
    operator): an existing export is replaced only by whoever made it."""
    from artifacts import LimitError, PolicyError, check_build_room, owner_tag, quota_tag
    from deploy.space import ExportError, export_space
    if not out:
        return "⚠ give an export name", ""
    refused = _others(app, adapters, client)
    if refused:
        return f"⚠ export failed: {refused}", ""
    try:
        out_dir, evict = app.policy.new_export(out, client=client)
        check_build_room(app.ws.root)  # an export copies a base
        r = export_space(out_dir, base or "default", list(adapters or []), hardware or "cpu-basic",
                         app.models_dir, app.adapters_dir, force=bool(force), keep_previous=False,
                         owner=owner_tag(app.ws, client), quota=quota_tag(app.ws, client))
        app.policy.evict_exports(evict)  # (only now: a failed export removes nothing of anyone's)
    except (PolicyError, ExportError, LimitError, OSError) as e:
        return f"⚠ export failed: {app.ws.scrub(str(e))}", ""
    return (f"exported **{r.base}** with adapters {', '.join(r.adapters) or '(none)'} for `{r.hardware}` to "
            f"`exports/{r.out.name}` ({len(r.files)} files, {r.size_bytes / 1e6:.1f} MB)", r.out.name)


def push_action(app, kind, repo_id, token, private, exist_ok, folder, base, adapters, hardware,
                client: str | None = None):
    """Pushes a Space (the given export folder, else a fresh export) or a model repository. client (None: the
    operator): only its own exports and adapters, and the shipped ones."""
    from artifacts import LimitError, PolicyError, check_build_room, export_owner, may_change
    from deploy.push import PushError, export_and_push_space, push_model, push_space, scrub
    from deploy.space import ExportError
    typed = token if isinstance(token, str) else ""
    lines: list[str] = []
    token = ""
    try:
        token = app.policy.hub_token(typed, os.environ.get("HF_TOKEN"))
        refused = _others(app, adapters, client) if kind == "Model repository" or not folder else ""
        if refused:
            raise PolicyError(refused)
        if kind != "Model repository" and folder:
            d = app.policy.published_export(folder)
            if not may_change(app.ws, export_owner(d), client):
                raise PolicyError(f"exports/{d.name} is another user's export: publish yours")
        if kind == "Model repository" or not folder:  # both copy a base into a temporary folder first
            check_build_room(tempfile.gettempdir())
        if kind == "Model repository":
            url = push_model(repo_id, token, base or "default", list(adapters or []), app.models_dir,
                             app.adapters_dir, private=bool(private), exist_ok=bool(exist_ok), log=lines.append)
        elif folder:
            url = push_space(app.policy.published_export(folder), repo_id, token, private=bool(private),
                             exist_ok=bool(exist_ok), log=lines.append)
        else:
            url = export_and_push_space(repo_id, token, base or "default", list(adapters or []),
                                        hardware or "cpu-basic", app.models_dir, app.adapters_dir,
                                        private=bool(private), exist_ok=bool(exist_ok), log=lines.append)
    except (PolicyError, PushError, ExportError, LimitError, OSError) as e:
        return app.ws.scrub(scrub(f"⚠ push failed: {e}", token or typed))
    return app.ws.scrub(scrub(f"pushed to [{url}]({url})\n\n" + "\n".join(f"- {x}" for x in lines), token))


def create_deploy_tab(app) -> DeployTab:
    from deploy.space import HARDWARE
    base0 = app.default_base()
    gr.Markdown("### Export a chat-only Space\nA folder with `app.py` (Chat + read-only Library on "
                "onnxruntime-genai and Gradio only: no torch, transformers or Olive), `requirements.txt` "
                "for the hardware, a README with the Spaces header, the ONNX base and the chosen adapters.")
    with gr.Row():
        base = gr.Dropdown(choices=app.base_names(), value=base0, label="Base model (ONNX)",
                           elem_id="deploy-base", interactive=True)
        # (the page as built is the same for everyone: the shipped adapters; its load fills in the client's)
        fitting0 = [a.name for a in app.adapters(base0) if a.ok and exportable(app, a, PAGE)] if base0 else []
        adapters = gr.CheckboxGroup(choices=fitting0, value=fitting0, label="Adapters",
                                    elem_id="deploy-adapters")
        hardware = gr.Dropdown(choices=list(HARDWARE), value="cpu-basic", label="Space hardware",
                               info=HARDWARE_HELP, elem_id="deploy-hardware")
    with gr.Row():
        out = gr.Textbox(_default_out(app, base0), label="Export name (a folder in exports/)", elem_id="deploy-out",
                         scale=4)
        force = gr.Checkbox(False, label="Replace a previous export of that name", elem_id="deploy-force", scale=1)
        export = gr.Button("Export Space folder", variant="primary", elem_id="deploy-export", scale=1)
    export_message = gr.Markdown("", elem_id="deploy-export-message")

    gr.Markdown("### Publish to the Hugging Face Hub")
    with gr.Row():
        kind = gr.Radio(["Space", "Model repository"], value="Space", label="What", elem_id="deploy-kind")
        repo_id = gr.Textbox("", label="Repository id (owner/name)", elem_id="deploy-repo", scale=2)
        token_label = "Hugging Face token (write access" + ("; default: $HF_TOKEN)" if app.policy.allow_server_token
                                                             else ")")
        token = gr.Textbox("", label=token_label, type="password", elem_id="deploy-token", scale=2)
    with gr.Row():
        private = gr.Checkbox(True, label="Private", elem_id="deploy-private")
        exist_ok = gr.Checkbox(False, label="Push into an existing repository of mine", elem_id="deploy-exist-ok")
        folder = gr.Textbox("", label="Export to push (a name in exports/; empty: export now)",
                            elem_id="deploy-folder", scale=3)
        push = gr.Button("Publish", variant="primary", elem_id="deploy-push")
    push_message = gr.Markdown("", elem_id="deploy-push-message")

    def pickers(base_name):
        names = app.base_names()
        if base_name not in names:
            base_name = app.default_base()
        me = requester()
        fitting = [a.name for a in app.adapters(base_name) if a.ok and exportable(app, a, me)] if base_name else []
        return (gr.update(choices=names, value=base_name), gr.update(choices=fitting, value=fitting),
                _default_out(app, base_name))

    # one export or push at a time, never waiting in Gradio's queue (a flood of them filled its 64 places for the
    # whole server): another is answered at once (ui/slots.py)
    # (turns: one client cannot hold it in a loop; $STUDIO_EXPORT_TURN_S, default 5 s)
    gate = Gate("Space export or push", total=1, turns_s=export_turn_s())

    def do_export(b, ads, hw, o, f):
        with gate.enter() as busy:
            msg, path = (f"⚠ {busy}", None) if busy else export_action(app, b, ads, hw, o, f, requester())
        if msg.startswith("⚠"):
            gr.Warning(msg[2:])
        return msg, (path or gr.update())

    def do_push(k, r, t, p, e, fo, b, ads, hw):
        with gate.enter() as busy:
            msg = f"⚠ {busy}" if busy else push_action(app, k, r, t, p, e, fo, b, ads, hw, requester())
        if msg.startswith("⚠"):
            gr.Warning(msg[2:])
        return msg

    base.change(pickers, base, [base, adapters, out], api_visibility="private", concurrency_id="ui")
    export.click(do_export, [base, adapters, hardware, out, force], [export_message, folder],
                 api_name="export_space", concurrency_id="deploy", concurrency_limit=None)
    push.click(do_push, [kind, repo_id, token, private, exist_ok, folder, base, adapters, hardware],
               push_message, api_visibility="private", concurrency_id="deploy", concurrency_limit=None)
    tab = DeployTab(base, adapters, hardware, out, export, export_message, kind, repo_id, token, private,
                    exist_ok, folder, push, push_message)
    tab.on_load = (pickers, base, [base, adapters, out])
    return tab
