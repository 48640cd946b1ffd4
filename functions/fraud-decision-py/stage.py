"""`fraud-decision`, in Python: the fraud model's probabilities to a
decision with reason codes, as a JSON body, exactly as the Rust stage
(functions/fraud-decision) answers it:

    {"decision": "decline", "reasons": ["amount_far_above_average"],
     "score": 0.93, "transaction_id": "t1"}

`score` is the probability of fraud (column 1 of the `[1, 2]` FP32 tensor
`probabilities`). Reasons name the risk signals present, whatever the
decision, from the fields `fraud-features` passes through.

Config: `review` (default 0.3) and `decline` (default 0.7), the score
thresholds.
"""

import sluice_sdk as sluice


class FraudDecision(sluice.Stage):
    def run(self, message):
        review = sluice.config.number("review", 0.3)
        decline = sluice.config.number("decline", 0.7)
        probabilities = message.tensor("probabilities")
        probabilities.expect_shape([1, 2])
        score = probabilities.data[1]
        if score >= decline:
            decision = "decline"
        elif score >= review:
            decision = "review"
        else:
            decision = "approve"
        transaction = message.field("transaction_id")
        return sluice.Message.json(
            {
                "transaction_id": transaction if isinstance(transaction, str) else "",
                "score": score,
                "decision": decision,
                "reasons": reasons(message),
            }
        )


def reasons(message):
    def number(name):
        value = message.field(name)
        # bool is an int in Python; a flag is no number.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return 0.0

    def flag(name):
        return message.field(name) is True

    found = []
    history = flag("has_history")
    if history and number("amount_ratio") >= 3.0:
        found.append("amount_far_above_average")
    if history and number("amount") > number("max_amount_7d"):
        found.append("amount_above_recent_max")
    if flag("foreign"):
        found.append("foreign_country")
    if not history:
        found.append("no_recent_history")
    return found
