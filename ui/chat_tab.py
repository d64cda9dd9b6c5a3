"""Chat tab: base and adapter pickers, streaming chat with sampling controls, and a Compare mode that
streams two variants of the same base side by side (engine.compare). Each pane is titled with its variant;
an adapter refused by the chosen base names the base it was built for."""
from __future__ import annotations

import os
from dataclasses import dataclass

import gradio as gr

from artifacts import SEED_MAX, clean_message
from artifacts.limits import without_surrogates
from engine.live import Pacer
from ui.chat_engine import ChatEngineSide, UIError, check_conversation, make_sampling
from ui.slots import UNKNOWN, ClientSlots, chats_per_client

CHAT_SLOTS = 8  # answers (a compare is one) streaming at once for everyone

# at most ~25 UI updates per second (the engine decodes on its own thread; each update costs Gradio a
# postprocess + diff of the whole chat); STUDIO_STREAM_INTERVAL_S=0 sends every frame the reader can take
STREAM_INTERVAL_S = float(os.environ.get("STUDIO_STREAM_INTERVAL_S", "0.04"))
# ... and about 50 per second for all streams together: 8 concurrent users get ~6 updates/s each, so that
# Gradio's per-update work does not slow the batch they decode in (STUDIO_STREAM_TOTAL_HZ=0: no shared cap)
PACER = Pacer(float(os.environ.get("STUDIO_STREAM_TOTAL_HZ", "50")))

# Example prompts (Gradio `examples`) that show base, travel and pirate differ at once (Compare); all but the
# first are held out of the adapters' training sets. README.md's demo table answers the same prompts.
EXAMPLES = ["What should I pack for a trip?", "Tell me about Lisbon.", "What should I pack for a ski trip?",
            "What kind of animal is a bee?"]


@dataclass
class ChatTab:
    base: gr.Dropdown
    variant: gr.Dropdown
    variant_b: gr.Dropdown
    refused: gr.Markdown
    compare: gr.Checkbox
    bot_a: gr.Chatbot
    bot_b: gr.Chatbot
    message: gr.Textbox
    send: gr.Button
    clear: gr.Button
    refresh: gr.Button
    stats: gr.Markdown
    sampling: list


def text_of(content) -> str:
    """Text of a Chatbot message content (Gradio 6 gives a list of parts, older ones a string)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, (list, tuple)):
        return "".join(text_of(c) for c in content)
    return "" if content is None else str(content)


def to_messages(history) -> list[dict]:
    out = []
    for m in history or []:
        role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if role in ("user", "assistant", "system"):
            text = text_of(content)
            if text:
                out.append({"role": role, "content": text})
    return out


BACKEND_NAMES = {"og": " (onnxruntime-genai)", "ort": " (onnxruntime, own loop)"}
FINISH_NAMES = {"eos": ": the answer ended", "length": ": max new tokens reached", "context": ": the context is full"}


def format_stats(s) -> str:
    if s is None:
        return ""
    g = lambda k, d=None: getattr(s, k, d) if not isinstance(s, dict) else s.get(k, d)  # noqa: E731
    parts = [f"**{g('variant', '?')}**", f"provider {g('provider', '?')}"]
    if g("backend"):
        lora = " · fused LoRA op" if g("lora_kernels") == "fused" else ""
        parts.append(f"backend {g('backend')}{BACKEND_NAMES.get(g('backend'), '')}{lora}")
    if g("ttft_s") is not None:
        parts.append(f"TTFT {g('ttft_s'):.3f} s")
    if g("tokens") is not None:
        parts.append(f"{g('tokens')} tokens")
    if g("tokens_per_s") is not None:
        parts.append(f"decode {g('tokens_per_s'):.1f} tokens/s")
    if g("seconds") is not None:
        parts.append(f"wall {g('seconds'):.2f} s")
    if g("finished"):
        why = g("finish_reason") or "end"
        parts.append(f"done ({why}{FINISH_NAMES.get(why, '')})")
    if g("note"):
        parts.append(str(g("note")))
    return " · ".join(parts)


DEMO_NOTE = ("ℹ The embedded `default` base is **a small demo model** (see `models/default-hf/README.md`) trained "
             "offline on this project's own corpus: it shows the build → chat loop, not useful answers. For real use, "
             "build a base from a Hub model in the **Build** tab, e.g. `microsoft/Phi-3.5-mini-instruct` "
             "(`python -m pipeline build recipes/phi35-mini.yaml`).")


def pane_title(variant: str | None) -> str:
    return "base (no adapter)" if variant in (None, "", "base") else str(variant)


def refusal(app: ChatEngineSide, base: str, name: str, reason: str) -> str:
    """The refusal of adapter `name` on `base`, naming the published base it was built for when there is one."""
    info = next((a for a in app.adapters(None) if a.name == name), None)
    fp = (info.metadata or {}).get("base_fingerprint") if info else None
    if fp and "another base" in reason:
        fits = next((b.dir.name for b in app.bases() if b.fingerprint == fp), None)
        if fits and fits != base:
            return f"built for base '{fits}', pick it above"
        built = (info.metadata or {}).get("base_name")
        return (f"built for base '{built}', which is not in models/ (or was rebuilt since)" if built
                else reason)
    return reason


def _is_demo_base(app: ChatEngineSide, base: str | None) -> bool:
    info = next((b for b in app.bases() if b.dir.name == base), None)
    meta = info.meta if info else {}
    prepared = meta.get("prepared") if isinstance(meta.get("prepared"), dict) else {}
    return "models/default-hf" in (str(meta.get("source_model", "")), str(prepared.get("source", "")))


def _variant_error(app: ChatEngineSide, base: str, *variants: str) -> str:
    """Why one of `variants` cannot be used with `base` ('' when all can)."""
    ok, refused = app.variants(base)
    reasons = dict(refused)
    for variant in variants:
        if variant in ok:
            continue
        if variant in reasons:
            return (f"adapter {variant!r} cannot be used with base {base!r}: "
                    f"{refusal(app, base, variant, reasons[variant])}")
        return f"unknown adapter {variant!r} for base {base!r}; available: {', '.join(ok)}"
    return ""


class ChatService:
    """The Chat tab's handlers (create_chat_tab only lays out and wires): the pickers and /chat."""

    def __init__(self, app: ChatEngineSide):
        self.app = app
        # (requests with no known address on a shared app: half the chat slots together, CHAT_SLOTS below)
        self.slots = ClientSlots(chats_per_client(), unknown=max(chats_per_client(), CHAT_SLOTS // 2))

    def pickers(self, base_name, va, vb):
        """Refreshes the pickers: bases on disk, variants of the chosen base, refused adapters."""
        bases = self.app.base_names()
        if base_name not in bases:
            base_name = self.app.default_base()
        if base_name is None:
            msg = f"No ONNX base model in `{self.app._shown(self.app.models_dir)}` yet: build one in the **Build** tab."
            return (gr.update(choices=[], value=None), gr.update(choices=["base"], value="base"),
                    gr.update(choices=["base"], value="base"), msg)
        try:
            ok, refused_list = self.app.variants(base_name)
        except Exception as e:  # a base that does not load: say so, keep the page alive
            return (gr.update(choices=bases, value=base_name), gr.update(choices=["base"], value="base"),
                    gr.update(choices=["base"], value="base"), f"⚠ {e}" if isinstance(e, UIError) else
                    f"⚠ base {base_name!r} does not load: {self.app._scrubbed(clean_message(e))}")
        va = va if va in ok else "base"
        vb = vb if vb in ok else next((v for v in ok if v != va), "base")
        text = ""
        if refused_list:
            text = "**Refused adapters** (not usable with this base):\n" + "\n".join(
                f"- `{n}`: {refusal(self.app, base_name, n, r)}" for n, r in refused_list)
        return (gr.update(choices=bases, value=base_name), gr.update(choices=ok, value=va),
                gr.update(choices=ok, value=vb), text)

    def respond(self, msg, hist_a, hist_b, base_name, va, vb, cmp, temp, tp, tk, mx, rp, sd,
                request: gr.Request = None):
        """Streams the answer of one variant, or of two (compare) into both panes. `request` (given by Gradio):
        whose answer it is, for the per-client limit."""
        hist_a, hist_b = list(hist_a or []), list(hist_b or [])
        msg = (msg or "").strip()
        eng = None
        if not msg:
            gr.Warning("Type a message first.")
            yield hist_a, hist_b, "", "⚠ error: empty message"
            return
        try:
            # both panes, compare or not: the right one is sent back with every frame either way
            check_conversation(msg, *(text_of(m.get("content") if isinstance(m, dict) else None)
                                      for m in hist_a + hist_b))
            eng = self.app.chat(base_name, hold=True)  # (not closed to make room for another base meanwhile)
            err = _variant_error(self.app, base_name, *((va, vb) if cmp else (va,)))
            if err:
                raise UIError(err)
            params = make_sampling(temperature=float(temp), top_p=float(tp), top_k=int(tk),
                                   max_new_tokens=int(mx), repetition_penalty=float(rp),
                                   seed=sd or 0)
        except Exception as e:
            if eng is not None:
                self.app.release(eng)
            e = self.app._scrubbed(clean_message(e))
            gr.Warning(e)
            # (what is sent back must be valid text: a lone surrogate made Gradio's orjson cut the stream)
            yield (*without_surrogates([hist_a, hist_b, msg]), f"⚠ error: {e}")
            return
        client = self.slots.key_of(request)
        if not self.slots.take(client):
            self.app.release(eng)
            n = self.slots.unknown if client == UNKNOWN else self.slots.per_client
            who = "users without a known address (login sessions)" if client == UNKNOWN else "your address"
            e = (f"{'an answer' if n == 1 else f'{n} answers'} from {who} {'is' if n == 1 else 'are'} "
                 "still streaming: wait until one ends (or press Stop) before sending another")
            gr.Warning(e)
            yield (*without_surrogates([hist_a, hist_b, msg]), f"⚠ error: {e}")
            return
        ctx_a = to_messages(hist_a) + [{"role": "user", "content": msg}]
        new_a = hist_a + [{"role": "user", "content": msg}, {"role": "assistant", "content": ""}]
        live = None
        try:
            if not cmp:
                live = eng.start(ctx_a, va, params)  # decodes on its own thread; this reads it coalesced
                yield new_a, hist_b, "", f"… {va}"
                for text, stats in live.frames(STREAM_INTERVAL_S, PACER):
                    new_a[-1] = {"role": "assistant", "content": text}
                    yield new_a, hist_b, "", format_stats(stats)
            else:
                ctx_b = to_messages(hist_b) + [{"role": "user", "content": msg}]
                new_b = hist_b + [{"role": "user", "content": msg}, {"role": "assistant", "content": ""}]
                if ctx_a != ctx_b:  # panes diverged (e.g. compare turned on mid-chat): compare this turn
                    ctx_a = ctx_b = [{"role": "user", "content": msg}]
                live = eng.start_compare(ctx_a, va, vb, params)
                yield new_a, new_b, "", f"… {va} | {vb}"
                for ta, tb, sa, sb in live.frames(STREAM_INTERVAL_S, PACER):
                    new_a[-1] = {"role": "assistant", "content": ta}
                    new_b[-1] = {"role": "assistant", "content": tb}
                    batched = eng.compare_batched and "interleaved" not in (sb.note or "")
                    line = format_stats(sa) + "  \n" + format_stats(sb) + " · " + (
                        "compare: one batch of 2" if batched else f"compare: {eng.compare_note or 'interleaved'}")
                    yield new_a, new_b, "", line
        except Exception as e:
            e = self.app._scrubbed(clean_message(e))
            gr.Warning(f"generation failed: {e}")
            yield hist_a, hist_b, msg, f"⚠ error: {e}"
        finally:
            if live is not None:  # Stop, a closed tab or an error: the engine stops after its current step
                live.cancel()
            self.slots.give(client)
            self.app.release(eng)


def create_chat_tab(app: ChatEngineSide) -> ChatTab:
    base0 = app.default_base()
    with gr.Row():
        base = gr.Dropdown(choices=app.base_names(), value=base0, label="Base model (ONNX)",
                           elem_id="chat-base", scale=2, interactive=True,
                           allow_custom_value=True)
        variant = gr.Dropdown(choices=["base"], value="base", label="Adapter", elem_id="chat-variant",
                              scale=2, interactive=True, allow_custom_value=True)
        compare = gr.Checkbox(False, label="Compare", elem_id="chat-compare", scale=1)
        variant_b = gr.Dropdown(choices=["base"], value="base", label="Adapter (right pane)",
                                elem_id="chat-variant-b", scale=2, visible=False, interactive=True,
                                allow_custom_value=True)
        refresh = gr.Button("↻ Refresh", elem_id="chat-refresh", scale=0, min_width=100)
    refused = gr.Markdown("", elem_id="chat-refused")
    gr.Markdown(DEMO_NOTE if _is_demo_base(app, base0) else "", elem_id="chat-demo-note")
    with gr.Row():
        bot_a = gr.Chatbot(label=pane_title("base"), elem_id="chat-bot-a", height=420, show_label=True)
        bot_b = gr.Chatbot(label=pane_title("base"), elem_id="chat-bot-b", height=420, visible=False,
                           show_label=True)
    with gr.Row():
        message = gr.Textbox(placeholder="Ask something ...", show_label=False, elem_id="chat-input",
                             scale=6, lines=1, max_lines=6)
        send = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
        clear = gr.Button("Clear", elem_id="chat-clear", scale=1)
    gr.Examples(EXAMPLES, inputs=[message], label="Examples", elem_id="chat-examples")
    stats = gr.Markdown("", elem_id="chat-stats")
    with gr.Accordion("Sampling", open=False, elem_id="chat-sampling"):
        with gr.Row():
            temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)",
                                    elem_id="chat-temperature")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p", elem_id="chat-top-p")
            top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0 = off)", elem_id="chat-top-k")
        with gr.Row():
            max_new = gr.Slider(1, 1024, value=128, step=1, label="Max new tokens", elem_id="chat-max-new")
            rep = gr.Slider(1.0, 2.0, value=1.0, step=0.01, label="Repetition penalty",
                            elem_id="chat-rep-penalty")
            seed = gr.Number(0, precision=0, label="Seed", elem_id="chat-seed", info=f"0 to {SEED_MAX}")
    sampling = [temperature, top_p, top_k, max_new, rep, seed]

    svc = ChatService(app)

    def on_compare(cmp):
        return gr.update(visible=cmp), gr.update(visible=cmp)

    picker_out = [base, variant, variant_b, refused]
    refresh.click(svc.pickers, [base, variant, variant_b], picker_out, api_name="refresh_pickers",
                  concurrency_id="ui", show_progress="hidden")
    base.change(svc.pickers, [base, variant, variant_b], picker_out, api_visibility="private",
                concurrency_id="ui", show_progress="hidden")
    compare.change(on_compare, compare, [variant_b, bot_b], api_visibility="private", queue=False)
    variant.change(lambda v: gr.update(label=pane_title(v)), variant, bot_a, api_visibility="private",
                   queue=False, show_progress="hidden")
    variant_b.change(lambda v: gr.update(label=pane_title(v)), variant_b, bot_b, api_visibility="private",
                     queue=False, show_progress="hidden")
    chat_inputs = [message, bot_a, bot_b, base, variant, variant_b, compare] + sampling
    chat_outputs = [bot_a, bot_b, message, stats]
    send.click(svc.respond, chat_inputs, chat_outputs, api_name="chat", concurrency_id="chat",
               concurrency_limit=CHAT_SLOTS)
    message.submit(svc.respond, chat_inputs, chat_outputs, api_visibility="private", concurrency_id="chat",
                   concurrency_limit=CHAT_SLOTS)
    clear.click(lambda: ([], [], "", ""), None, [bot_a, bot_b, message, stats], api_name="clear_chat",
                queue=False)
    tab = ChatTab(base, variant, variant_b, refused, compare, bot_a, bot_b, message, send, clear, refresh,
                  stats, sampling)
    tab.pickers_fn = svc.pickers
    tab.respond_fn = svc.respond  # the /chat handler (tests drive it without HTTP)
    return tab
