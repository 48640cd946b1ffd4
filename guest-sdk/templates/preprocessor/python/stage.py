"""`{{name}}`: a text to its normalised form (lower case, one space between
words) and its word count.

In: `{"text": "..."}`. Out: `{"normalised": "...", "words": N}`.
"""

import sluice_sdk as sluice


class Normalise(sluice.Stage):
    def run(self, message):
        body = message.body_json()
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise sluice.InvalidInput("the body needs a string field `text`")
        words = text.lower().split()
        return sluice.Message.json({"normalised": " ".join(words), "words": len(words)})
