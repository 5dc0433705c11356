"""Per-seat policy benchmark: what deciding a connection costs when the proxy first finds the laptop's exam
(1,000 mapped addresses, 10 exams) against one union policy of the same rules, in the same run.

    .venv/bin/python bench/seat_policy.py [--laptops 1000] [--exams 10] [--rules 40] [--decisions 200000]

Both sides run the proxy's own code: ``invigil.seatpolicy`` parses the file the hall server writes and
``netpolicy.gate.seat_of`` / ``decide_tls`` decide, exactly as the addon does for every new connection (the
CONNECT host and the TLS server name). The baseline is the same decisions through one policy holding every
exam's rules (what the proxy did before it decided per seat). Hosts are a mix of allowed (an exam platform
shared by all exams, each exam's own sites) and blocked ones. Prints the cost per decision (median of 5
rounds), the ratio, and PASS/FAIL against "within 10 %"; and the time to parse the file (the proxy reloads
it when it changes). CPU only: no sockets, no mitmproxy event loop (bench/proxy.py measures those).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from invigil.policy import parse_policy  # noqa: E402
from invigil.seatpolicy import parse_seat_policy, seat_policy_text  # noqa: E402
from netpolicy.gate import decide_tls, seat_of  # noqa: E402

TARGET = 1.10


def exam_policy(exam: int, rules: int) -> str:
    lines = ["allow ans.app", "allow *.ans.app", "block *.chatgpt.com", "block chat.openai.com"]
    lines += [f"allow site{n}.exam{exam}.example" for n in range(rules - len(lines) - 1)]
    lines.append(f"allow *.cdn{exam}.example")
    return "\n".join(lines) + "\n"


def union_policy(exams: int, rules: int) -> str:
    seen: dict[str, None] = {}
    for exam in range(exams):
        for line in exam_policy(exam, rules).splitlines():
            seen.setdefault(line, None)  # the old union dropped duplicates (the parser refuses them)
    return "\n".join(seen) + "\n"


def workload(laptops: int, exams: int, rules: int, n: int, rng: random.Random) -> list[tuple[str, str]]:
    addresses = [f"10.20.{i // 250}.{i % 250 + 1}" for i in range(laptops)]
    hosts = ["ans.app", "www.ans.app", "chat.openai.com", "x.chatgpt.com", "unlisted.example"]
    hosts += [f"site{s}.exam{e}.example" for e in range(exams) for s in range(0, rules - 5, 7)]
    hosts += [f"img.cdn{e}.example" for e in range(exams)]
    return [(rng.choice(addresses), rng.choice(hosts)) for _ in range(n)]


def run(decide, work: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    for address, host in work:
        decide(address, host)
    return (time.perf_counter() - started) / len(work) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--laptops", type=int, default=1000)
    parser.add_argument("--exams", type=int, default=10)
    parser.add_argument("--rules", type=int, default=40, help="rules per exam")
    parser.add_argument("--decisions", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(1)
    exams = {e: (f"Exam {e}", e % 2 == 0, exam_policy(e, args.rules)) for e in range(args.exams)}
    seats = {f"10.20.{i // 250}.{i % 250 + 1}": i % args.exams for i in range(args.laptops)}
    text = seat_policy_text(exams, seats, "2026-12-04T09:00:00.000Z")
    started = time.perf_counter()
    document = parse_seat_policy(text)
    parse_ms = (time.perf_counter() - started) * 1000
    union = parse_policy(union_policy(args.exams, args.rules))
    work = workload(args.laptops, args.exams, args.rules, args.decisions, rng)

    def per_seat(address: str, host: str) -> None:
        seat = seat_of(document, address, False, "", None)
        decide_tls(seat.policy, host, host, None)

    def union_decide(_address: str, host: str) -> None:
        decide_tls(union, host, host, None)

    seat_us, union_us = [], []
    for _ in range(5):  # interleaved, so drift of the machine's speed hits both
        union_us.append(run(union_decide, work))
        seat_us.append(run(per_seat, work))
    seat_med, union_med = statistics.median(seat_us), statistics.median(union_us)
    allowed = sum(
        decide_tls(seat_of(document, a, False, "", None).policy, h, h, None)[1].allowed
        for a, h in work[:5000]
    )
    print(
        f"per-seat file: {args.exams} exams x {args.rules} rules, {args.laptops} mapped addresses, "
        f"{len(text) / 1024:.0f} KiB; parsed in {parse_ms:.1f} ms"
    )
    print(f"union policy (baseline): {len(union.rules)} rules")
    print(f"decisions: {args.decisions} per round, 5 rounds; {allowed / 50:.0f} % of the first 5000 allowed")
    print(
        f"per decision: per-seat {seat_med:.2f} us, union {union_med:.2f} us "
        f"(ratio {seat_med / union_med:.3f})"
    )
    verdict = "PASS" if seat_med <= union_med * TARGET else "FAIL"
    print(f"{verdict} per-seat decision within 10 % of the union policy's")


if __name__ == "__main__":
    main()
