"""Map over chunks, reduce with a data dependency: count the primes below two million.

The range is cut into chunks; one array task per chunk counts the primes in it
(``task.map`` with tuple items: positional arguments). The reduce step gets the whole
array *as an argument*: that is a data dependency (``afterok`` on the array), and inside
the job the argument arrives as the list of every chunk's result, in item order.

Runs on whatever `slurmscope.Cluster()` finds: a Slurm cluster when one answers,
the embedded local scheduler otherwise (`SLURMSCOPE_BACKEND=local` forces it).

    python examples/map_reduce.py
"""

from __future__ import annotations

import math
import os
import tempfile

import slurmscope

LIMIT = 2_000_000
CHUNKS = 8
KNOWN = 148_933  # the number of primes below two million

root = os.environ.get("SLURMSCOPE_ROOT") or os.path.join(
    tempfile.gettempdir(), "slurmscope-example"
)
cluster = slurmscope.Cluster(root=root)


@slurmscope.task(time="00:05:00", mem="500M")
def count_primes(lo: int, hi: int) -> dict[str, int]:
    """Map: the primes in ``[lo, hi)``, with a segmented sieve."""
    size = hi - lo
    is_prime = bytearray([1]) * size
    for p in range(2, math.isqrt(hi - 1) + 1):
        start = max(p * p, (lo + p - 1) // p * p)
        is_prime[start - lo :: p] = bytes(len(range(start - lo, size, p)))
    for n in range(lo, min(2, hi)):  # 0 and 1 are not prime
        is_prime[n - lo] = 0
    primes = [lo + i for i, flag in enumerate(is_prime) if flag]
    return {"lo": lo, "hi": hi, "count": len(primes), "largest": max(primes, default=0)}


@slurmscope.task(time="00:05:00")
def reduce_counts(partials: list[dict[str, int]]) -> dict[str, int]:
    """Reduce: ``partials`` is the array's results, one dict per chunk, in chunk order."""
    return {
        "chunks": len(partials),
        "primes": sum(p["count"] for p in partials),
        "largest": max(p["largest"] for p in partials),
    }


def main() -> None:
    print(f"backend: {cluster.backend.kind} ({cluster.name}), job directories under {cluster.root}")
    step = LIMIT // CHUNKS
    chunks = [(lo, min(lo + step, LIMIT)) for lo in range(0, LIMIT, step)]

    counts = count_primes.map(chunks, max_concurrent=4)  # one array job, submitted now
    total = reduce_counts(counts)  # the array as an argument: a data dependency

    print(f"map: {len(counts)} chunks in array {counts.job_id}; reduce: job {total.job_id}")
    summary = total.get_result()
    for (lo, hi), part in zip(chunks, counts.get_results(), strict=True):
        print(f"  [{lo:>9,}, {hi:>9,}): {part['count']:>6,} primes")
    print(
        f"primes below {LIMIT:,}: {summary['primes']:,} "
        f"(largest {summary['largest']:,}; expected {KNOWN:,}: "
        f"{'ok' if summary['primes'] == KNOWN else 'MISMATCH'})"
    )
    print()
    print(total.explain())


if __name__ == "__main__":
    main()
