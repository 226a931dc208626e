"""The session interface ``track.track_frames`` drives (``prompt``, ``propagate``, ``remove``,
``reset``, ``close``) for scripted test stand-ins: a subclass says what ``prompt`` records in
``objs`` and what ``_frame(t)`` shows; ``_step(t, reverse)`` runs before each frame."""


class ScriptedSession:
    def __init__(self):
        self.objs: dict = {}

    def _frame(self, t) -> dict:
        raise NotImplementedError

    def _step(self, t, reverse: bool) -> None:
        pass

    def propagate(self, a, b, reverse=False):
        for t in range(a, b - 1, -1) if reverse else range(a, b + 1):
            self._step(t, reverse)
            yield t, self._frame(t)

    def remove(self, ids):
        for i in ids:
            self.objs.pop(i, None)
        return True

    def reset(self):
        self.objs = {}

    def close(self):
        pass
