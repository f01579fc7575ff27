"""Governance and sampling evaluation cost on the request thread, 50 rules loaded.

python -m benchmarks.governance
"""

from __future__ import annotations

import timeit

from moesif_agent._exchange import HEADERS_WSGI, Exchange
from moesif_agent._forwarding import Forwarding
from moesif_agent._options import DEFAULT_TRUSTED_PROXIES
from moesif_agent._policy import Policy

from ._util import median, table


def rules(count: int, path: str = "request.route") -> list[dict[str, object]]:
    made: list[dict[str, object]] = []
    for n in range(count):
        kind = ("regex", "user", "company")[n % 3]
        made.append(
            {
                "_id": f"rule-{n}",
                "type": kind,
                "block": n % 2 == 0,
                "applied_to": "not_matching" if n % 5 == 0 else "matching",
                "regex_config": [
                    {
                        "conditions": [
                            {"path": path, "value": f"^/blocked/{n}/"},
                            {"path": "request.verb", "value": "POST"},
                        ]
                    }
                ],
                "response": {"status": 403, "headers": {"X-Rule": f"{n}"}, "body": {"n": n}},
            }
        )
    return made


def exchange() -> Exchange:
    ex = Exchange()
    ex.method = "GET"
    ex.path = "/items/42"
    ex.request_header_style = HEADERS_WSGI
    ex.request_headers = [("HTTP_HOST", "api.example"), ("HTTP_USER_AGENT", "bench")]
    ex.remote_addr = "10.0.0.1"
    ex.transaction_id = "00000000-0000-4000-8000-000000000001"
    ex.user_id = "user-7"  # in the cohort of rule-7 (a user rule)
    ex.company_id = "company-8"  # in the cohort of rule-8 (a company rule)
    return ex


def cost(policy: Policy, number: int = 20_000) -> float:
    ex = exchange()
    samples = timeit.repeat(lambda: policy.begin(ex), number=number, repeat=7)
    return median(samples) / number * 1e6


def main() -> list[list[object]]:
    trusted = Forwarding(DEFAULT_TRUSTED_PROXIES)
    config = {
        "sample_rate": 50,
        "user_rules": {
            f"user-{n}": [{"rules": f"rule-{n}", "values": {}}] for n in range(1, 50, 3)
        },
        "company_rules": {f"company-{n}": [{"rules": f"rule-{n}"}] for n in range(2, 50, 3)},
        "regex_config": [
            {"conditions": [{"path": "request.route", "value": f"^/noisy/{n}"}], "sample_rate": 1}
            for n in range(10)
        ],
    }
    rows: list[list[object]] = [
        ["no config, no rules", f"{cost(Policy(trusted=trusted)):.2f} µs"],
        [
            "50 rules + 10 sampling regexes, request matches none",
            f"{cost(Policy(config, rules(50), trusted=trusted)):.2f} µs",
        ],
    ]
    rows.append(
        [
            "50 rules on a header (no route to pre-filter on), request matches none",
            f"{cost(Policy(config, rules(50, 'request.headers.x-path'), trusted=trusted)):.2f} µs",
        ]
    )
    print(table(["policy.begin() per request", "median of 7"], rows))
    return rows


if __name__ == "__main__":
    main()
