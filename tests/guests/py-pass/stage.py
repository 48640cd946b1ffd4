"""A Python stage that answers its input unchanged: the per-request cost
of a Python stage with no work in it (`host/benches/languages.rs`)."""

import sluice_sdk as sluice


class PassThrough(sluice.Stage):
    def run(self, message):
        return message
