"""A Python preprocessor for the tests: doubles every FP32 tensor, keeps
the fields and adds `lang` and the config's `tag`; a text body `invalid`
is refused (400), `crash` raises (500), anything else is echoed upper-case."""

import sluice_sdk as sluice


class Probe(sluice.Stage):
    def run(self, message):
        sluice.log.info("probe called", tensors=len(message.tensors))
        if message.body is not None:
            text = message.body.decode()
            if text == "invalid":
                raise sluice.InvalidInput("the probe refuses `invalid`")
            if text == "crash":
                raise ValueError("the probe crashed on purpose")
            return sluice.Message.text(text.upper())
        tensors = {
            name: t.map(lambda v: v * 2) if t.dtype == "FP32" else t
            for name, t in message.tensors.items()
        }
        fields = dict(message.fields, lang="python", tag=sluice.config.get("tag") or "")
        return sluice.Message(tensors=tensors, fields=fields)
