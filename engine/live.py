"""Streaming decoupled from the reader: a request's frames are produced on their own thread, the
reader (the web UI) takes the latest frame at most every `interval` seconds (coalesced: about 25
updates per second), and a reader that stops reading (cancel, disconnect) stops the request after the
step in flight. A Pacer shares one budget of updates per second among all the streams being read, so that
many concurrent readers do not take the server's time (and the GIL) from the decode loop."""
from __future__ import annotations

import threading
import time


class Pacer:
    """A budget of reader updates per second shared by the streams being read: with n readers each waits at
    least n / total_hz seconds between frames (never less than its own interval). total_hz <= 0: no
    budget. One user (or one compare) keeps the reader's own rate; 8 users at 50 Hz get ~6 updates/s each."""

    def __init__(self, total_hz: float):
        self.total_hz = float(total_hz)
        self._lock = threading.Lock()
        self.readers = 0

    def enter(self) -> None:
        with self._lock:
            self.readers += 1

    def leave(self) -> None:
        with self._lock:
            self.readers = max(0, self.readers - 1)

    def interval(self, own: float) -> float:
        if self.total_hz <= 0:
            return own
        return max(own, self.readers / self.total_hz)


class Live:
    def __init__(self, frames, name: str = "studio-decode"):
        self._frames = frames
        self._cv = threading.Condition()
        self._latest = None
        self._count = 0                # frames produced so far
        self._done = False
        self._error: BaseException | None = None
        self._stop = False
        self.produced_frames = 0       # frames the engine made (the reader may see fewer)
        self.thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for f in self._frames:
                with self._cv:
                    self._latest = f
                    self._count += 1
                    self.produced_frames = self._count
                    self._cv.notify_all()
                if self._stop:
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            self._error = e
        finally:
            try:
                self._frames.close()  # a generator: its finally ends the engine's work
            except Exception:  # noqa: BLE001
                pass
            with self._cv:
                self._done = True
                self._cv.notify_all()

    @property
    def done(self) -> bool:
        return self._done

    def cancel(self) -> None:
        """Stop the request: the producer ends after the step in flight (frames with a cancel() method, the
        ort backend's, are told at once: the decode loop drops their rows at the end of its current step)."""
        self._stop = True
        cancel = getattr(self._frames, "cancel", None)
        if cancel is not None:
            cancel()

    def join(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def frames(self, interval: float = 0.04, pacer: Pacer | None = None):
        """The latest frame, at most once per `interval` seconds (or the pacer's share, if longer), always
        including the last one. Closing this iterator early (the reader went away) cancels the request."""
        seen = 0
        if pacer is not None:
            pacer.enter()
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._count != seen or self._done)
                    if self._count == seen:  # done, nothing new
                        break
                    frame, seen, done = self._latest, self._count, self._done
                t = time.perf_counter()
                yield frame
                if done:
                    break
                wait = interval if pacer is None else pacer.interval(interval)
                left = wait - (time.perf_counter() - t)
                if left > 0:
                    with self._cv:
                        self._cv.wait_for(lambda: self._done, timeout=left)
        finally:
            if pacer is not None:
                pacer.leave()
            self.cancel()
        if self._error is not None:
            raise self._error
